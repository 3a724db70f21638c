"""One Annoy file on disk: build it safely, and check it before Annoy ever maps it.

Annoy 1.17 has two sharp edges (measured, see FIELD-NOTES): `save()` unlinks the old file and
writes straight to the final name, and `load()` accepts a truncated file, same-size random bytes,
a file of another dimension whose size happens to divide, or another metric's file, after which
the first query dies with SIGSEGV and takes the whole batch job with it. So:

* `build_annoy` saves under a temporary name in the same folder and renames, so the final name
  only ever holds a complete file;
* `open_annoy` checks the file against its `FileRecord` record (size, sha256) and against Annoy's
  node layout (every item node says 1 descendant, the trailing roots say n_items) before calling
  `load()`, and every node's pointers too (a split node's children, a leaf's item ids: in range,
  no cycle; vectors finite), vectorised over the memory-mapped file, and raises
  `IndexIntegrityError` naming the problem instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional

import numpy as np

from pipelines.cli.cli_errors import InputError

METRIC = "angular"  # the only metric the indexer builds: embeddings are L2-normalised

# Bytes before the vector in one Annoy node, per metric (annoylib.h node structs; int32 ids,
# float32 values). Angular: n_descendants, children[2]. Euclidean/Manhattan: n_descendants,
# a, children[2]. Dot: n_descendants, children[2], dot_factor.
_NODE_HEADER = {"angular": 12, "euclidean": 16, "manhattan": 16, "dot": 16}
# Where `children` (and a leaf's list of item ids, which runs on to the node's end) starts.
_CHILDREN_OFFSET = {"angular": 4, "euclidean": 8, "manhattan": 8, "dot": 4}
CHECK_CHUNK_BYTES = 1 << 24  # nodes checked per numpy pass over the memory-mapped file


class IndexIntegrityError(InputError, RuntimeError):
    """An index file or folder does not match its manifest; loading it could crash the process."""


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """A file the manifest lists (name relative to the index folder): items it holds, size, sha256."""

    name: str
    n_items: int
    size: int
    sha256: str


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def node_size(dimension: int, metric: str) -> int:
    """Bytes per node in an Annoy file of this dimension and metric."""
    if metric not in _NODE_HEADER:
        raise ValueError(f"unsupported Annoy metric {metric!r}; expected one of {sorted(_NODE_HEADER)}")
    return _NODE_HEADER[metric] + 4 * dimension


def build_annoy(
    vectors: np.ndarray, path: str, n_trees: int, n_jobs: int = -1, metric: str = METRIC, seed: int = 0
) -> FileRecord:
    """Build an index over `vectors` (item i = row i) and write it to `path` via temp + rename."""
    from annoy import AnnoyIndex

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"need a non-empty [n, d] array of vectors, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or inf")
    index = AnnoyIndex(vectors.shape[1], metric)
    index.set_seed(seed)
    for i, row in enumerate(vectors):
        index.add_item(i, row)
    index.build(n_trees, n_jobs=n_jobs)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if not index.save(tmp):
            raise OSError(f"Annoy could not save {tmp}")
        index.unload()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return FileRecord(os.path.basename(path), len(vectors), os.path.getsize(path), sha256_file(path))


def check_annoy(
    path: str, record: FileRecord, dimension: int, n_trees: int, metric: str = METRIC, verify_checksum: bool = True
) -> None:
    """Raise `IndexIntegrityError` unless `path` is the complete file `record` describes.

    Size and the node-layout checks are cheap; the sha256 reads the whole file once (about 1 s
    per GB) and catches any corruption the layout check cannot see.
    """
    if not os.path.isfile(path):
        raise IndexIntegrityError(f"{path}: Annoy file missing (the manifest lists it)")
    size = os.path.getsize(path)
    if size != record.size:
        raise IndexIntegrityError(
            f"{path}: {size} bytes but the manifest says {record.size} (truncated or replaced file)"
        )
    stride = node_size(dimension, metric)
    if size % stride:
        raise IndexIntegrityError(
            f"{path}: {size} bytes is not a whole number of {metric} nodes of dimension {dimension} "
            f"({stride} bytes each): wrong dimension or metric"
        )
    n_nodes = size // stride
    if n_nodes < record.n_items + n_trees:
        raise IndexIntegrityError(
            f"{path}: {n_nodes} nodes cannot hold {record.n_items} items and {n_trees} tree roots"
        )
    layout = _layout_problem(path, n_nodes, stride, record.n_items, n_trees, metric)
    if layout:
        raise IndexIntegrityError(f"{path}: {layout}: not the {metric} index of dimension {dimension} "
                                  "the manifest records (damaged or crafted file)")
    if verify_checksum:
        digest = sha256_file(path)
        if digest != record.sha256:
            raise IndexIntegrityError(
                f"{path}: sha256 {digest[:12]}... does not match the manifest's {record.sha256[:12]}..."
            )


def _layout_problem(path: str, n_nodes: int, stride: int, n_items: int, n_trees: int,
                    metric: str = METRIC) -> Optional[str]:
    """Describe how the file breaks Annoy's layout, or None: item nodes first, each with one
    descendant; the file ends with one copy of each tree root, each counting every item; and
    every node Annoy can walk to is safe to walk (`_node_problem`)."""
    words = np.memmap(path, dtype=np.int32, mode="r", shape=(n_nodes, stride // 4))
    counts = words[:, 0]
    bad = np.flatnonzero(counts[:n_items] != 1)
    if bad.size:
        return f"item node {int(bad[0])} has n_descendants={int(counts[bad[0]])}, expected 1"
    roots = np.asarray(counts[n_nodes - n_trees :])
    if not (roots == n_items).all():
        return f"the last {n_trees} nodes should be tree roots over {n_items} items, found counts {roots[:5].tolist()}"
    rows = max(1, CHECK_CHUNK_BYTES // stride)
    for start in range(0, n_nodes, rows):
        problem = _node_problem(np.asarray(words[start:start + rows]), start, n_items, metric)
        if problem:
            return problem
    return None


def _node_problem(block: np.ndarray, start: int, n_items: int, metric: str) -> Optional[str]:
    """The first node of `block` (int32 words of nodes start, start+1, ...) that a query could not
    safely walk, or None. Annoy (annoylib.h, `_get_all_nns`) reads a node by its n_descendants:
    1 below n_items: an item (its vector must be finite); at most K (the ids that fit in the node
    from `children` on): a leaf listing that many item ids, each below n_items; more: a split
    node whose two children it follows and whose plane it multiplies by the query. Annoy builds a
    node's children before the node itself, so a split node's children are below its own number:
    that also rules out cycles, along which a query would never end."""
    first = _CHILDREN_OFFSET[metric] // 4
    k = block.shape[1] - first  # Annoy's _K
    node = np.arange(start, start + len(block))[:, None]
    counts = block[:, :1]
    vectors = block[:, _NODE_HEADER[metric] // 4:].view(np.float32)
    inner = node >= n_items
    split = inner & (counts > k)
    listed = np.arange(k)[None, :] < counts
    slots = block[:, first:first + k]
    checks = (
        (inner & ((counts < 1) | (counts > n_items)), "n_descendants={count} outside 1..n_items"),
        (split & ((slots[:, :2] < 0) | (slots[:, :2] >= node)).any(1, keepdims=True),
         "a split node points at node {children}, outside 0..its own number - 1"),
        (inner & (counts <= k) & (counts >= 1) & (listed & ((slots < 0) | (slots >= n_items))).any(1, keepdims=True),
         "a leaf lists an item id outside 0..n_items - 1"),
        (((~inner) | split) & ~np.isfinite(vectors).all(1, keepdims=True), "its vector holds NaN or infinity"),
    )
    for mask, message in checks:
        bad = np.flatnonzero(mask[:, 0])
        if bad.size:
            row = int(bad[0])
            return f"node {start + row}: " + message.format(count=int(counts[row, 0]),
                                                             children=block[row, first:first + 2].tolist())
    return None


def open_annoy(
    path: str, record: FileRecord, dimension: int, n_trees: int, metric: str = METRIC, verify_checksum: bool = True
):
    """An `AnnoyIndex` loaded from `path` after `check_annoy` passed (never loads an unchecked file)."""
    from annoy import AnnoyIndex

    check_annoy(path, record, dimension, n_trees, metric, verify_checksum)
    index = AnnoyIndex(dimension, metric)
    try:
        index.load(path)
    except OSError as e:
        raise IndexIntegrityError(f"{path}: Annoy refused the file: {e}") from e
    loaded = index.get_n_items()  # (not get_n_trees: Annoy over-counts roots of tiny indexes)
    if loaded != record.n_items:
        index.unload()
        raise IndexIntegrityError(f"{path}: Annoy reads {loaded} items, the manifest says {record.n_items}")
    return index
