"""The report's pictures: small JPEG thumbnails, made once, and the verified matches to draw.

Thumbnails go into a folder beside the page (`report_files/`), named by a hash of the image id
and the size, so a rerun reuses every one it already made and the page refers to them by a
relative path (readable offline, and a 100k-query page stays small). Query photos come from
PRED/test_records, references from the shards the index was built from (its manifest's
`data_dir`); an image that is not there gets no thumbnail (the page draws a blank).

Matches: for a query whose neighbours were spatially verified (PRED/verification.csv), the
neighbour with the most inliers is verified again with the same code (`indexer/ranking/verify.py`,
the query's stored JPEG against the reference's stored features) and its inlier pairs are kept,
scaled to the two thumbnails, for the page to draw as lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

THUMB_SIZE = 160  # longer side, pixels


@dataclasses.dataclass(frozen=True)
class Thumb:
    """A thumbnail file (relative to the page) and the size of the image it was made from."""

    path: str
    width: int  # thumbnail pixels
    height: int
    scale: float  # thumbnail pixels per stored-image pixel


def thumb_name(image_id: str, size: int) -> str:
    return f"{hashlib.sha1(image_id.encode('utf-8')).hexdigest()[:20]}-{size}.jpg"


def make_thumb(jpeg: bytes, path: str, size: int) -> Thumb:
    """Write `jpeg` shrunk to `size` on its longer side at `path` (kept when already there)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        width, height = img.size
        scale = min(1.0, size / max(width, height))
        tw, th = max(1, round(width * scale)), max(1, round(height * scale))
        if not os.path.isfile(path):
            small = img.convert("RGB").resize((tw, th), Image.BILINEAR)
            tmp = f"{path}.tmp-{os.getpid()}"
            small.save(tmp, format="JPEG", quality=80)
            os.replace(tmp, path)
    return Thumb(os.path.basename(path), tw, th, tw / width)


def thumbnails(images: Iterable[Tuple[str, bytes]], folder: str, size: int = THUMB_SIZE) -> Dict[str, Thumb]:
    """image id -> Thumb for each (id, encoded image); files in `folder` (made once)."""
    os.makedirs(folder, exist_ok=True)
    out: Dict[str, Thumb] = {}
    for image_id, jpeg in images:
        try:
            out[image_id] = make_thumb(jpeg, os.path.join(folder, thumb_name(image_id, size)), size)
        except OSError:  # not decodable here: no thumbnail, the page shows a blank
            continue
    return out


def shard_images(files: Sequence[str], wanted: Optional[set] = None) -> Iterator[Tuple[str, bytes]]:
    """(id, stored JPEG) of the records in `files` (those of `wanted` ids only, when given)."""
    from indexer.embedding.embed import iter_jpegs

    if not files or (wanted is not None and not wanted):
        return
    remaining = None if wanted is None else set(wanted)
    for image_id, jpeg in iter_jpegs(files):
        if remaining is None or image_id in remaining:
            yield image_id, jpeg
            if remaining is not None:
                remaining.discard(image_id)
                if not remaining:
                    return


def match_lines(pairs: Iterable[Tuple[str, bytes, int]], store: np.ndarray) -> Dict[str, np.ndarray]:
    """query id -> inlier matches float32 [n, 4] (query x, y, reference x, y in stored pixels) for
    each (query id, its stored JPEG, the reference's item in the local-feature store)."""
    from indexer.ranking import verify
    from indexer.ranking.local_features import Extractor, max_features_of, unpack

    extract, verifier = Extractor(max_features_of(store)), verify.Verifier()
    return {image_id: verifier.matches(extract(jpeg), unpack(store[item])) for image_id, jpeg, item in pairs}


def scaled(matches: np.ndarray, query: Thumb, reference: Thumb) -> List[float]:
    """Matches in thumbnail pixels, flattened (x1, y1, x2, y2, ...), one decimal."""
    if not len(matches):
        return []
    factors = np.array([query.scale, query.scale, reference.scale, reference.scale], np.float32)
    return [round(float(v), 1) for v in (matches * factors).ravel()]
