"""Local features of an image (SIFT keypoints and descriptors) and the index folder's store of them.

Spatial verification (indexer/ranking/verify.py) needs, for every reference, where its distinctive points
are and what they look like. They are extracted once at index build from the stored reference
JPEGs (the same bytes the embedding saw) and kept in one fixed-stride file, so prediction reads a
neighbour's features by item number from a memory map, whatever the index size:

    IDX/local_features.npy   structured [n_items]: count (uint16), xy (float32 [F, 2]),
                             descriptors (uint8 [F, 128])

Where they are extracted: by the Beam embedding job when the references are embedded there (one
pass over each shard's records gives its embeddings and its features, written per shard as
`write_part` files, then `merge_parts` streams them into the store), or in the build process
(`write_store`, on threads). Both give the same bytes. The store is checked per segment (one
segment per reference shard): `store_digests` at build time go into the index manifest, and
`FeatureStore` checks a segment's digest the first time one of its records is read, so opening an
index hashes none of it (index_dir.py).

SIFT (Lowe 2004; OpenCV's, patent-free since 2020) rather than ORB: its descriptors match across
the scale and viewpoint changes of landmark photos, and OpenCV stores them as integer values
0..255, so uint8 keeps them exactly. Size: F x 136 bytes per reference (F = 1000: 136 KB; GLD's
1.2M references at F = 256: 42 GB) -- docs/quality.md has the arithmetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
import uuid
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from indexer import threads
from pipelines.cli.cli_errors import InputError

DESCRIPTOR_DIM = 128
STORE = "local_features.npy"  # in the index folder
DEFAULT_MAX_FEATURES = 1000


def store_dtype(max_features: int) -> np.dtype:
    """One reference's record in the store: how many features it has, their positions, descriptors."""
    return np.dtype([("count", "<u2"), ("xy", "<f4", (max_features, 2)),
                     ("descriptors", "u1", (max_features, DESCRIPTOR_DIM))])


@dataclasses.dataclass(frozen=True)
class LocalFeatures:
    """An image's keypoints: positions float32 [n, 2] (pixels) and SIFT descriptors uint8 [n, 128]."""

    xy: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


EMPTY = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_DIM), np.uint8))


class Extractor:
    """SIFT on the grayscale image as stored (the records are already resized to the index's size).

    Keeps OpenCV's detector, which is not thread-safe: one Extractor per thread or process.
    """

    def __init__(self, max_features: int = DEFAULT_MAX_FEATURES) -> None:
        import cv2

        if not 1 <= max_features <= 65535:
            raise ValueError(f"max_features={max_features}: expected 1..65535")
        self.max_features = max_features
        self._cv2 = cv2
        self._sift = cv2.SIFT_create(nfeatures=max_features)

    def __call__(self, image_bytes: bytes) -> LocalFeatures:
        """The features of an encoded image; none for bytes OpenCV cannot decode (the caller's
        images passed the preprocessing's checks, so that only means nothing to verify with)."""
        cv2 = self._cv2
        gray = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
        if gray is None or gray.size == 0:
            return EMPTY
        keypoints, descriptors = self._sift.detectAndCompute(gray, None)
        if descriptors is None or not keypoints:
            return EMPTY
        keep = min(len(keypoints), self.max_features)  # OpenCV may return a few over nfeatures on ties
        xy = np.array([k.pt for k in keypoints[:keep]], np.float32)
        return LocalFeatures(xy, np.clip(np.rint(descriptors[:keep]), 0, 255).astype(np.uint8))


def pack(features: LocalFeatures, max_features: int) -> np.ndarray:
    """One store record (a 0-d structured array) holding `features` (at most `max_features`)."""
    record = np.zeros((), store_dtype(max_features))
    n = min(len(features), max_features)
    record["count"] = n
    record["xy"][:n] = features.xy[:n]
    record["descriptors"][:n] = features.descriptors[:n]
    return record


def unpack(record: np.ndarray) -> LocalFeatures:
    """The features of one store record."""
    n = int(record["count"])
    return LocalFeatures(np.asarray(record["xy"][:n], np.float32), np.asarray(record["descriptors"][:n]))


def write_store(path: str, images: Iterable[bytes], n_items: int, max_features: int,
                workers: Optional[int] = None) -> int:
    """Extract the features of `n_items` encoded images (in item order, on `workers` threads, all
    cores by default) into a new store file at `path`, written through a memory map so memory
    stays flat at any size; returns the number of features written in all. Raises ValueError when
    the images are not exactly `n_items`."""
    store = np.lib.format.open_memmap(path, mode="w+", dtype=store_dtype(max_features), shape=(n_items,))
    total = count = 0
    for features in threads.ordered_map(lambda: Extractor(max_features), images, workers):
        if count >= n_items:
            raise ValueError(f"more than {n_items} images for the local-feature store")
        store[count] = pack(features, max_features)
        total += int(store[count]["count"])
        count += 1
    if count != n_items:
        raise ValueError(f"{count} images for {n_items} items: the records changed while the index was built")
    store.flush()
    del store
    return total


def store_digests(path: str, segment_sizes: Sequence[int], chunk_bytes: int = 1 << 24) -> Tuple[str, List[str]]:
    """(hex sha256 of the whole file, `segment_sha256` of each run of `segment_sizes` records), from
    one sequential read of the store at `path` (the manifest needs both; a store can be tens of GB)."""
    store = open_store(path)
    if sum(segment_sizes) != len(store):
        raise ValueError(f"segments of {sum(segment_sizes)} records for a store of {len(store)}")
    offset, itemsize = int(store.offset), store.dtype.itemsize
    del store
    whole = hashlib.sha256()
    digests: List[str] = []
    with open(path, "rb") as f:
        whole.update(f.read(offset))  # the .npy header: the file's digest only
        for n in segment_sizes:
            digest, left = hashlib.sha256(), int(n) * itemsize
            while left:
                block = f.read(min(chunk_bytes, left))
                if not block:
                    raise ValueError(f"{path} is shorter than its {sum(segment_sizes)} records")
                whole.update(block)
                digest.update(block)
                left -= len(block)
            digests.append(digest.hexdigest())
        while block := f.read(chunk_bytes):
            whole.update(block)
    return whole.hexdigest(), digests


def segment_sha256(records: np.ndarray, chunk_bytes: int = 1 << 24) -> str:
    """Hex sha256 of a run of store records' bytes (a segment of the store, or a part file's data)."""
    digest = hashlib.sha256()
    data = np.ascontiguousarray(records).view(np.uint8).reshape(-1)
    for start in range(0, len(data), chunk_bytes):
        digest.update(data[start:start + chunk_bytes])
    return digest.hexdigest()


# -- per-shard parts (the Beam embedding job) -------------------------------------------------------

PART_SUFFIX = ".features.npy"  # EMB/<shard file name>.features.npy beside the shard's embeddings
TMP_MARK = ".tmp-"


@dataclasses.dataclass(frozen=True)
class Part:
    """One shard's records, as a standalone .npy of the store's dtype, and its data's sha256."""

    path: str
    n_items: int
    sha256: str


def part_path(directory: str, shard: str) -> str:
    return os.path.join(directory, os.path.basename(shard) + PART_SUFFIX)


def extract_records(images: Iterable[bytes], max_features: int,
                    extractor: Optional[Callable[[bytes], LocalFeatures]] = None) -> np.ndarray:
    """Store records [n] of `images` (in order), extracted on this thread."""
    extract = extractor or Extractor(max_features)
    packed = [pack(extract(image), max_features) for image in images]
    return np.array(packed, store_dtype(max_features)) if packed else np.zeros(0, store_dtype(max_features))


def concatenate(blocks: Sequence[np.ndarray], max_features: int) -> np.ndarray:
    """One array of the store records in `blocks`, in order (empty when there are none)."""
    return np.concatenate(blocks) if blocks else np.zeros(0, store_dtype(max_features))


def remove_stale_temporaries(directory: str) -> int:
    """Delete part files left half-written by killed workers (call before a job starts)."""
    import tensorflow as tf

    stale = tf.io.gfile.glob(os.path.join(directory, f"*{PART_SUFFIX}{TMP_MARK}*"))
    for path in stale:
        tf.io.gfile.remove(path)
    return len(stale)


def write_part(path: str, records: np.ndarray) -> Part:
    """Write one shard's records to `path` (local or gs://): temporary name, then rename, so a file
    under its final name is complete. Returns its `Part` (digest of the records' bytes)."""
    import tensorflow as tf

    buf = io.BytesIO()
    np.save(buf, records, allow_pickle=False)
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(buf.getvalue())
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return Part(path, len(records), segment_sha256(records))


def part_size(n_items: int, max_features: int) -> int:
    """Bytes of a part file of `n_items` records (the .npy header is fixed for a given shape)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(
        np.zeros(0, store_dtype(max_features))) | {"shape": (n_items,)})
    return len(buf.getvalue()) + n_items * store_dtype(max_features).itemsize


class PartError(InputError, ValueError):
    """A per-shard part the Beam job wrote is missing, malformed or not the bytes it recorded."""


def merge_parts(path: str, parts: Sequence[Part], max_features: int, chunk_items: int = 256) -> List[str]:
    """Stream the parts, in order, into a new store file at `path` (never more than `chunk_items`
    records in memory), checking each part's data against its digest on the way; returns the
    segment digests (one per part). Raises ValueError naming a part that is missing, of the wrong
    shape or dtype, or whose bytes do not match its digest."""
    import tensorflow as tf

    dtype = store_dtype(max_features)
    n_items = sum(p.n_items for p in parts)
    store = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n_items,))
    start = 0
    digests: List[str] = []
    for part in parts:
        try:
            with tf.io.gfile.GFile(part.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, got = read_header(f)
                if tuple(shape) != (part.n_items,) or got != dtype or fortran:
                    raise ValueError(f"shape {shape} dtype {got}, expected ({part.n_items},) of this store's dtype")
                digest = hashlib.sha256()
                for at in range(0, part.n_items, chunk_items):
                    n = min(chunk_items, part.n_items - at)
                    block = f.read(n * dtype.itemsize)
                    if len(block) != n * dtype.itemsize:
                        raise ValueError("truncated")
                    digest.update(block)
                    store[start + at:start + at + n] = np.frombuffer(block, dtype)
                if f.read(1):
                    raise ValueError("longer than its records")
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise PartError(f"local-feature part {part.path}: {str(e).splitlines()[0] if str(e) else e!r} (delete it "
                            "and its .npz, and rerun)") from None
        if digest.hexdigest() != part.sha256:
            raise PartError(f"local-feature part {part.path}: its bytes do not match the digest its job recorded "
                            "(delete it and its .npz, and rerun)")
        digests.append(part.sha256)
        start += part.n_items
    store.flush()
    del store
    return digests


# -- reading, with lazy per-segment checks ----------------------------------------------------------

class StoreIntegrityError(ValueError):
    """A segment of the store does not match its digest (the index's manifest)."""


class FeatureStore:
    """The memory-mapped store, read by item like the array it wraps (`store[item]`, `len`,
    `dtype`, `shape`), each segment's bytes checked against its digest the first time one of its
    records is read (thread-safe); `verify()` checks them all now."""

    def __init__(self, path: str, store: np.ndarray, segment_sizes: Sequence[int], digests: Sequence[str],
                 on_corrupt: Callable[[str], Exception] = StoreIntegrityError) -> None:
        if sum(segment_sizes) != len(store) or len(segment_sizes) != len(digests):
            raise on_corrupt(f"{path}: {len(store)} records, the manifest's segments say {sum(segment_sizes)}")
        self.path = path
        self._store = store
        self._ends = np.cumsum(np.asarray(segment_sizes, np.int64))
        self._digests = list(digests)
        self._checked = [False] * len(digests)
        self._lock = threading.Lock()
        self._on_corrupt = on_corrupt

    @property
    def dtype(self) -> np.dtype:
        return self._store.dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._store.shape

    def __len__(self) -> int:
        return len(self._store)

    def _check(self, segment: int) -> None:
        with self._lock:
            if self._checked[segment]:
                return
            start = int(self._ends[segment - 1]) if segment else 0
            if segment_sha256(self._store[start:int(self._ends[segment])]) != self._digests[segment]:
                raise self._on_corrupt(f"{self.path}: records {start}..{int(self._ends[segment]) - 1} (segment "
                                       f"{segment}) do not match the manifest's sha256: the store is damaged")
            self._checked[segment] = True

    def __getitem__(self, item: int) -> np.ndarray:
        item = int(item)
        if not 0 <= item < len(self._store):
            raise IndexError(f"item {item} out of range 0..{len(self._store) - 1}")
        self._check(int(np.searchsorted(self._ends, item, side="right")))
        return self._store[item]

    def verify(self) -> None:
        """Check every segment now (raises on the first damaged one)."""
        for segment in range(len(self._digests)):
            self._check(segment)

    @property
    def checked_segments(self) -> int:
        return sum(self._checked)


def open_store(path: str) -> np.ndarray:
    """The store, memory-mapped read-only (features are read by item when a query needs them)."""
    store = np.load(path, mmap_mode="r", allow_pickle=False)
    if store.dtype.names != ("count", "xy", "descriptors") or store.ndim != 1:
        raise ValueError(f"{path} is not a local-feature store (dtype {store.dtype})")
    return store


def max_features_of(store: np.ndarray) -> int:
    return int(store.dtype["xy"].shape[0])
