"""Local features of an image (SIFT keypoints and descriptors) and the index folder's store of them.

Spatial verification (indexer/ranking/verify.py) needs, for every reference, where its distinctive points
are and what they look like. They are extracted once at index build from the stored reference
JPEGs (the same bytes the embedding saw) and kept in one fixed-stride file, so prediction reads a
neighbour's features by item number from a memory map, whatever the index size:

    IDX/local_features.npy   structured [n_items]: count (uint16), xy (float32 [F, 2]),
                             descriptors (uint8 [F, 128])

SIFT (Lowe 2004; OpenCV's, patent-free since 2020) rather than ORB: its descriptors match across
the scale and viewpoint changes of landmark photos, and OpenCV stores them as integer values
0..255, so uint8 keeps them exactly. Size: F x 136 bytes per reference (F = 1000: 136 KB; GLD's
1.2M references at F = 256: 42 GB) -- docs/quality.md has the arithmetic.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np

from indexer import threads

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


def open_store(path: str) -> np.ndarray:
    """The store, memory-mapped read-only (features are read by item when a query needs them)."""
    store = np.load(path, mmap_mode="r", allow_pickle=False)
    if store.dtype.names != ("count", "xy", "descriptors") or store.ndim != 1:
        raise ValueError(f"{path} is not a local-feature store (dtype {store.dtype})")
    return store


def max_features_of(store: np.ndarray) -> int:
    return int(store.dtype["xy"].shape[0])
