"""A plain folder of photos as prediction input: list them with an id each, or write them as a
test CSV (`id,url`) that the preprocessing stage reads like any other.

The id is the file name without its extension (Kaggle names test photos `<id>.jpg`, also in the
`test/a/b/c/` tree), so the folder is searched recursively. Two files with the same stem would
get one id: that is refused with both paths named rather than silently dropping one.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from pipelines.graph import report
from pipelines.sources import storage
from pipelines.cli.cli_errors import InputError

class FolderError(InputError, ValueError):
    """A photo folder that cannot be listed as prediction input; the message names the path."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")


def list_images(folder: str) -> List[Tuple[str, str]]:
    """(id, absolute path) of every image file under `folder`, sorted by id."""
    if not os.path.isdir(folder):
        raise FolderError(f"{folder} is not a folder")
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                continue
            path = os.path.abspath(os.path.join(root, name))
            if not _utf8(path):
                raise FolderError(f"{path.encode('utf-8', 'surrogateescape')!r}: the file name is not UTF-8 (ids and "
                                 "the test CSV are text): rename it")
            if stem in found:
                raise FolderError(f"two photos would share the id {stem!r}: {found[stem]} and {path}")
            found[stem] = path
    return sorted(found.items())


def _utf8(text: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (else it holds surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def write_folder_csv(folder: str, csv_path: str) -> int:
    """Write the photos of `folder` as an `id,url` CSV (absolute paths) at `csv_path`, atomically;
    returns how many. The content depends only on the folder, so a rerun's CSV is byte-identical."""
    images = list_images(folder)
    if not images:
        raise FolderError(f"{folder} holds no photo ({', '.join(IMAGE_EXTENSIONS)})")
    storage.write_atomic(csv_path, report.csv_bytes(["id", "url"], images))
    return len(images)
