"""Every reference's k most similar other references, for the build-time steps that need them
(database-side augmentation, indexer/rerank.py; the other-landmark penalty, indexer/confidence.py).

Two paths give the same answer (as chunks of rows, most similar first):

- **exact** below `NeighbourSettings.exact_below` references: row blocks times all rows (BLAS) and
  argpartition, O(N^2 D) time, one block of at most `chunk` x N float32 similarities in memory;
- **Annoy** from that size up: an angular Annoy index over the vectors, built on disk in a
  temporary folder (`on_disk_build`: its nodes live in a file, not in the heap), then each item's
  nearest items from that index (`get_nns_by_item`), about N log N. Candidates come with their exact
  cosines, recomputed from the vectors, so the two paths give equal similarities for equal sets.

Nothing N x k is kept: the caller gets one chunk of `chunk` rows at a time and reduces it (a
penalty per row, an augmented vector per row). With `labels`, rows of the same label are left out
as well (the other-landmark penalty): a row asks Annoy for its label's size plus `k` (plus
`extra`) candidates, so same-label items cannot crowd the others out; a row that still finds fewer
than `k` others (an approximate search, or a label larger than `max_candidates`) is answered exactly.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import tempfile
from typing import Iterator, Optional, Tuple

import numpy as np

Chunk = Tuple[int, np.ndarray, np.ndarray]  # (first row, items int64 [c, k], cosines float32 [c, k])

_BLOCK_FLOATS = 1 << 25  # exact path: at most this many similarities (128 MiB of float32) per block


@dataclasses.dataclass(frozen=True)
class NeighbourSettings:
    """How `top_k` searches; `indexer.build --neighbours_exact_below --neighbour_trees` set the first two."""

    exact_below: int = 50_000  # fewer rows than this: exact search; from this many up: Annoy
    n_trees: int = 16  # trees of the temporary Annoy index (more: better agreement, slower build)
    search_k_factor: int = 4  # Annoy search_k = this x n_trees x candidates asked for
    extra: int = 10  # candidates asked for beyond what a row needs (better recall of the top k)
    max_candidates: int = 2048  # rows that would need more candidates than this are answered exactly
    chunk: int = 4096  # rows per chunk handed to the caller
    threads: int = 0  # Annoy build and query threads (0: one per core)
    seed: int = 0  # the temporary index's random seed (same inputs + seed: same neighbours)
    scratch_dir: Optional[str] = None  # where the temporary index file goes (None: the system's temp folder)

    def uses_annoy(self, n_rows: int) -> bool:
        return n_rows >= self.exact_below


def top_k(vectors: np.ndarray, k: int, labels: Optional[np.ndarray] = None,
          settings: NeighbourSettings = NeighbourSettings()) -> Iterator[Chunk]:
    """Chunks in row order: each row's `k` most similar rows by cosine (unit vectors [N, D]),
    itself excluded, and with `labels` [N] every row of its own label excluded too; most similar
    first. The caller checks that every row has at least `k` such rows."""
    x = np.ascontiguousarray(vectors, np.float32)
    if k < 1 or len(x) == 0:
        raise ValueError(f"need k >= 1 and rows, got k={k} and {len(x)} rows")
    labels = None if labels is None else np.asarray(labels, np.int64)
    if settings.uses_annoy(len(x)):
        yield from _annoy_chunks(x, k, labels, settings)
        return
    step = max(1, min(settings.chunk, _BLOCK_FLOATS // len(x)))
    for start in range(0, len(x), step):
        items, sims = exact_rows(x, np.arange(start, min(len(x), start + step)), k, labels)
        yield start, items, sims


def exact_rows(x: np.ndarray, rows: np.ndarray, k: int, labels: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-k (items, cosines) of the given rows against all rows, as `top_k` defines them."""
    sims = x[rows] @ x.T
    sims[np.arange(len(rows)), rows] = -np.inf
    if labels is not None:
        sims[labels[rows, None] == labels[None, :]] = -np.inf
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64), np.take_along_axis(top_sims, order, axis=1)


def _annoy_chunks(x: np.ndarray, k: int, labels: Optional[np.ndarray], settings: NeighbourSettings) -> Iterator[Chunk]:
    from annoy import AnnoyIndex

    threads = settings.threads or os.cpu_count() or 1
    if labels is None:
        wanted = np.full(len(x), k + 1, np.int64)  # itself, then k others
    else:
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        wanted = counts[inverse] + k  # its own label (itself included), then k others
    wanted = np.minimum(wanted + settings.extra, len(x))
    if settings.scratch_dir:
        os.makedirs(settings.scratch_dir, exist_ok=True)
    # ".staging-": the index folder's prefix for scratch that the next build removes if a kill left it
    with tempfile.TemporaryDirectory(prefix=".staging-neighbours-", dir=settings.scratch_dir) as tmp:
        index = AnnoyIndex(x.shape[1], "angular")
        index.set_seed(settings.seed)
        index.on_disk_build(os.path.join(tmp, "neighbours.ann"))
        for i, row in enumerate(x):
            index.add_item(i, row)
        index.build(settings.n_trees, n_jobs=threads)
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
                for start in range(0, len(x), settings.chunk):
                    rows = np.arange(start, min(len(x), start + settings.chunk))
                    parts = np.array_split(rows, threads)
                    items = np.concatenate(list(pool.map(
                        lambda part: _annoy_rows(index, part, k, labels, wanted, settings), parts)))
                    short = np.flatnonzero(items[:, -1] < 0)  # rows Annoy did not fill: exact
                    sims = np.einsum("cd,ckd->ck", x[rows], x[np.maximum(items, 0)]).astype(np.float32)
                    if short.size:
                        items[short], sims[short] = exact_rows(x, rows[short], k, labels)
                    order = np.argsort(-sims, axis=1, kind="stable")
                    yield start, np.take_along_axis(items, order, axis=1), np.take_along_axis(sims, order, axis=1)
        finally:
            index.unload()


def _annoy_rows(index, rows: np.ndarray, k: int, labels: Optional[np.ndarray], wanted: np.ndarray,
                settings: NeighbourSettings) -> np.ndarray:
    """items [len(rows), k] from Annoy (-1 where it found fewer than k), in its order (by angle)."""
    items = np.full((len(rows), k), -1, np.int64)
    for j, i in enumerate(rows):
        n = int(wanted[i])
        if n > settings.max_candidates:
            continue
        found = np.asarray(index.get_nns_by_item(int(i), n, settings.search_k_factor * settings.n_trees * n),
                           np.int64)
        keep = found[found != i] if labels is None else found[labels[found] != labels[i]]
        items[j, :min(k, len(keep))] = keep[:k]
    return items
