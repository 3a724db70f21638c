"""GLDv2's image tars (`images_000.tar` ...), local or gs://, read without extracting them.

At GLDv2 scale (500 tars of about 1 GB, 1.2M members) the work is split in two:
1. `index_tar`: one light pass per tar reads only the 512-byte member headers (tarfile over a
   seekable stream skips the data by seeking; for gs:// each seek is a ranged read) and yields
   where each member's bytes are: (tar, offset, size). When the md5 list has an entry for the
   whole tar, that pass reads the tar sequentially instead, hashing it on the way.
2. `read_member`: a row carries that location as a string (`location`), and the image fetch
   reads exactly that byte range (bounded by the fetch's byte limit), checking the member's md5
   when the list gives one.

md5 lists are `md5sum`-style lines (`<md5>  <name>`; `<name> <md5>` is read too): a name ending
in `.tar` is a whole tar, any other names one member (by its path or file stem = the image id).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import io
import os
import re
import tarfile
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

from pipelines.sources import storage
from pipelines.images.errors import RowFailure

SCHEME = "tar-member:"  # tar-member:<offset>:<size>:<md5 or empty>:<tar path>
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_GCS_CHUNK = 1 << 20  # ranged-read size while skipping through a gs:// tar's headers


@dataclasses.dataclass(frozen=True)
class Member:
    """A regular file inside a tar: where its bytes are."""

    image_id: str  # the member's file stem (GLDv2: a/b/c/<id>.jpg)
    name: str
    tar: str
    offset: int
    size: int


def expand_tars(spec: str) -> List[str]:
    """Comma-separated tar paths or globs (local or gs://) -> the tar paths, in order, each once.
    ValueError when a pattern matches nothing (a typo must not silently drop a tar's images)."""
    out: List[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if not any(c in item for c in "*?["):
            matches = [item]
        elif storage.is_gcs(item):
            folder, pattern = item.rsplit("/", 1)
            matches = sorted(p for p in storage.list_dir(folder) if fnmatch.fnmatchcase(storage.basename(p), pattern))
        else:
            matches = sorted(glob.glob(item))
        if not matches:
            raise ValueError(f"{item}: matches no file")
        out.extend(m for m in matches if m not in out)
    return out


def member_id(name: str) -> str:
    """The image id a member name stands for: its file stem (`a/b/c/abc123.jpg` -> `abc123`)."""
    return os.path.splitext(os.path.basename(name))[0]


def read_md5_list(path: str) -> Iterator[Tuple[str, str]]:
    """(name, md5) per line of an md5 list; ValueError naming the line when one is unreadable."""
    text = storage.read_bytes(path).decode("utf-8")
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and _MD5.match(parts[0]):
            yield parts[1].lstrip("*"), parts[0].lower()
        elif len(parts) == 2 and _MD5.match(parts[1]):
            yield parts[0], parts[1].lower()
        else:
            raise ValueError(f"{path}:{n}: expected '<md5>  <name>', got {line[:80]!r}")


def is_tar_entry(name: str) -> bool:
    """Whether an md5 list entry is for a whole tar (else for one member)."""
    return name.endswith(".tar")


class _HashingReader(io.RawIOBase):
    """A forward-only reader that hashes everything read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.md5 = hashlib.md5()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _open_seekable(path: str) -> BinaryIO:
    if storage.is_gcs(path):
        return storage.open_read(path, chunk_size=_GCS_CHUNK)
    return open(path, "rb")


def index_tar(path: str, expected_md5: Optional[str] = None) -> Iterator[Member]:
    """Every regular member of a tar, in order. With `expected_md5` the whole tar is read and
    hashed, and after the last member `TarChecksumError` is raised on a mismatch. A missing or
    unreadable tar raises (FileNotFoundError, tarfile.TarError, OSError)."""
    with _open_seekable(path) as raw:
        hashing = _HashingReader(raw) if expected_md5 else None
        mode = "r|" if hashing else "r:"
        with tarfile.open(fileobj=hashing or raw, mode=mode) as tar:
            for info in tar:
                if info.isreg():
                    yield Member(member_id(info.name), info.name, path, info.offset_data, info.size)
        if hashing:
            hashing.drain()
            actual = hashing.md5.hexdigest()
            if actual != expected_md5:
                raise TarChecksumError(f"{storage.basename(path)}: md5 {actual}, the list says {expected_md5}")


class TarChecksumError(Exception):
    """A whole tar's md5 differs from its md5 list entry."""


class TransientRead(Exception):
    """A member read that failed for a reason worth another try (e.g. a gs:// transport error);
    `pipelines.sources.fetch` retries it with backoff like any other transient fetch failure."""


def location(member: Member, md5: str = "") -> str:
    """The string a row carries to have `read_member` read this member (md5 checked if given)."""
    return f"{SCHEME}{member.offset}:{member.size}:{md5}:{member.tar}"


def source_url(member: Member) -> str:
    """What failures.csv and the record's source url say about where the image came from."""
    return f"{member.tar}#{member.name}"


def read_member(loc: str, max_bytes: int) -> bytes:
    """The bytes of a member from its `location`, or `RowFailure` (not_found, too_large, truncated,
    md5_mismatch, fetch_error), or `TransientRead`."""
    try:
        offset_s, size_s, md5, path = loc[len(SCHEME):].split(":", 3)
        offset, size = int(offset_s), int(size_s)
    except ValueError as e:
        raise RowFailure("fetch_error", f"malformed tar member location {loc[:120]!r}") from e
    if size > max_bytes:
        raise RowFailure("too_large", f"member of {size} bytes > {max_bytes}")
    try:
        data = storage.read_range(path, offset, size)
    except FileNotFoundError as e:
        raise RowFailure("not_found", path) from e
    except (IsADirectoryError, PermissionError) as e:
        raise RowFailure("fetch_error", f"{type(e).__name__}: {path}") from e
    except Exception as e:  # transport and the like: retried by pipelines.sources.fetch, then fetch_error
        raise TransientRead(f"{type(e).__name__}: {e}") from e
    if len(data) < size:
        raise RowFailure("truncated", f"{path} ends {size - len(data)} bytes into this member")
    if md5 and hashlib.md5(data).hexdigest() != md5:
        raise RowFailure("md5_mismatch", f"member md5 {hashlib.md5(data).hexdigest()}, the list says {md5}")
    return data


def md5_by_key(entries: List[Tuple[str, str]]) -> Dict[str, str]:
    """Member entries keyed by image id (file stem); tar entries by tar basename."""
    return {(name if is_tar_entry(name) else member_id(name)): md5 for name, md5 in entries}
