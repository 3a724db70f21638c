"""Every reference's k most similar other references, for the build-time steps that need them
(database-side augmentation, indexer/ranking/rerank.py; the other-landmark penalty, indexer/ranking/confidence.py).

Two paths give the same answer (as chunks of rows, most similar first):

- **exact** below `NeighbourSettings.exact_below` references: row blocks times all rows (BLAS) and
  argpartition, O(N^2 D) time, one block of at most `chunk` x N float32 similarities in memory;
- **Annoy** from that size up, about N log N: an angular Annoy index over the vectors, built on
  disk in a temporary folder (`on_disk_build`: its nodes live in a file, not in the heap). Pass 1
  asks it for each item's `width` x k nearest items (`get_nns_by_item`) and streams them to a file
  (N x 2k int32). Pass 2 keeps, by exact cosine recomputed from the vectors, the best k among each
  row's pass-1 list and its listed items' own lists (with labels, also the lists of up to `mates`
  rows of its own label, whose other-label neighbours are likely its own): a cheap refinement that
  recovers most of what a small `search_k` missed. Equal sets give equal cosines on both paths.

Nothing N x k is kept in memory: the caller gets one chunk of `chunk` rows at a time and reduces
it (a penalty per row, an augmented vector per row). With `labels`, rows of the same label are
left out as well (the other-landmark penalty): a row asks Annoy for its label's size plus `k`
(plus `extra`) candidates, so same-label items cannot crowd the others out. A label so big that
this would pass `max_candidates` (a GLDv2 landmark of thousands of photos: O(size^2) per label)
instead asks a few more temporary indexes that hold none of its rows (`_big_label_lists`: one over
the small labels' rows, then halves of the big labels against each other), about N log N in all.
A row that still finds fewer than `k` others is answered exactly.
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
    search_k_factor: int = 3  # Annoy search_k = this x n_trees x candidates asked for (docs/scale.md: why 3)
    extra: int = 5  # candidates asked for beyond what a row needs (better recall of the top k)
    max_candidates: int = 2048  # labels whose rows would ask for more candidates: _big_label_lists
    width: int = 2  # pass 1 and 2 keep width x k neighbours per row (more candidates for pass 2)
    refine: int = 1  # pass-2 refinements (at least 1)
    mates: int = 16  # with labels, pass 2 also takes the pass-1 neighbours of this many rows of the same label
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
        width = min(settings.width * k, len(x) - 1)  # the lists kept between passes
        wanted = np.full(len(x), width + 1, np.int64)  # itself, then `width` others
    else:
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        width = min(settings.width * k, len(x) - int(counts.max()))
        wanted = counts[inverse] + width  # its own label (itself included), then `width` others
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
            # pass 1: Annoy's k per row, streamed to a file on disk (N x k int32)
            first = np.lib.format.open_memmap(os.path.join(tmp, "first.npy"), "w+", np.int32, (len(x), width))
            big = wanted > settings.max_candidates  # (labels only) rows whose own label would crowd Annoy's answer
            if big.any():
                _big_label_lists(x, labels, big, width, settings, tmp, first, threads)
            with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
                for start in range(0, len(x), settings.chunk):
                    rows = np.arange(start, min(len(x), start + settings.chunk))
                    items = np.concatenate(list(pool.map(
                        lambda part: _annoy_rows(index, part, width, labels, wanted, settings),
                        np.array_split(rows, threads))))
                    if big.any():
                        items[big[rows]] = first[rows[big[rows]]]
                    short = np.flatnonzero(items[:, -1] < 0)  # rows Annoy did not fill: exact
                    if short.size:
                        items[short] = exact_rows(x, rows[short], width, labels)[0]
                    first[rows] = items
            # pass 2: the best k among each row's own and its neighbours' neighbours (with labels, also
            # those of up to `settings.mates` rows of its own label), by exact cosine
            # (`refine` times: each pass reads the previous one's file and writes the next)
            mates = None if labels is None else _label_mates(labels, settings.mates)
            for step in range(1, settings.refine + 1):
                better = None if step == settings.refine else np.lib.format.open_memmap(
                    os.path.join(tmp, f"refined-{step}.npy"), "w+", np.int32, (len(x), width))
                for start in range(0, len(x), settings.chunk):
                    rows = np.arange(start, min(len(x), start + settings.chunk))
                    items, sims = _refined(x, rows, first, k if better is None else width, labels, mates)
                    if better is None:
                        yield start, items, sims
                    else:
                        better[rows] = items
                first = better
        finally:
            index.unload()


def _big_label_lists(x: np.ndarray, labels: np.ndarray, big: np.ndarray, width: int, settings: NeighbourSettings,
                     tmp: str, first: np.ndarray, threads: int) -> None:
    """Pass 1 for the rows of labels too big for the main index (asking it for the label's size plus
    `width` candidates would cost O(label size) per row, so O(size^2) per label): `first[row]` gets
    each such row's `width` nearest rows of other labels (-1 where fewer were found), by exact cosine
    among the answers of a few temporary Annoy indexes that hold no row of its label, so nothing of
    its own label can crowd them out. One index holds every row of a small label; then the big labels
    are split in two halves, the rows of each half ask an index over the other half's rows, and each
    half is split again, down to single labels. Every big row asks 1 + ceil(log2(big labels))
    indexes for `width` + `extra` items each, and every level indexes at most N rows: about
    N log N in all, whatever the labels' sizes. The best lists so far live in files under `tmp`."""
    from annoy import AnnoyIndex

    rows = np.flatnonzero(big)
    slot = np.full(len(x), -1, np.int64)
    slot[rows] = np.arange(len(rows))
    best = np.lib.format.open_memmap(os.path.join(tmp, "big-items.npy"), "w+", np.int64, (len(rows), width))
    best_sims = np.lib.format.open_memmap(os.path.join(tmp, "big-sims.npy"), "w+", np.float32, (len(rows), width))
    best[:] = -1
    best_sims[:] = -np.inf
    rounds = []  # (rows indexed, rows asking)
    small = np.flatnonzero(~big)
    if small.size:
        rounds.append((small, rows))
    halves = [np.unique(labels[rows])]
    while halves:
        group = halves.pop()
        if len(group) < 2:
            continue
        a, b = group[:len(group) // 2], group[len(group) // 2:]
        in_a, in_b = rows[np.isin(labels[rows], a)], rows[np.isin(labels[rows], b)]
        rounds += [(in_b, in_a), (in_a, in_b)]
        halves += [a, b]
    for number, (indexed, asking) in enumerate(rounds):
        index = AnnoyIndex(x.shape[1], "angular")
        index.set_seed(settings.seed + 1 + number)
        index.on_disk_build(os.path.join(tmp, "big.ann"))
        for j, i in enumerate(indexed):
            index.add_item(j, x[i])
        index.build(settings.n_trees, n_jobs=threads)
        n = min(width + settings.extra, len(indexed))

        def ask(part: np.ndarray) -> np.ndarray:
            found = np.full((len(part), n), -1, np.int64)
            for j, i in enumerate(part):
                got = index.get_nns_by_vector(x[i], n, settings.search_k_factor * settings.n_trees * n)
                found[j, :len(got)] = indexed[np.asarray(got, np.int64)]
            return found

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
                for start in range(0, len(asking), settings.chunk):
                    part = asking[start:start + settings.chunk]
                    found = np.concatenate(list(pool.map(ask, np.array_split(part, threads))))
                    at = slot[part]
                    cand = np.concatenate([best[at], found], axis=1)
                    sims = np.concatenate([best_sims[at], np.einsum("cd,cnd->cn", x[part], x[np.maximum(found, 0)])],
                                          axis=1)
                    sims[:, width:][found < 0] = -np.inf
                    top = np.argsort(-sims, axis=1, kind="stable")[:, :width]
                    best[at] = np.take_along_axis(cand, top, axis=1)
                    best_sims[at] = np.take_along_axis(sims, top, axis=1)
        finally:
            index.unload()
        os.remove(os.path.join(tmp, "big.ann"))
    for start in range(0, len(rows), settings.chunk):
        found = np.asarray(best[start:start + settings.chunk], np.int64)
        found[~np.isfinite(best_sims[start:start + settings.chunk])] = -1
        first[rows[start:start + settings.chunk]] = found
    del best, best_sims
    os.remove(os.path.join(tmp, "big-items.npy"))
    os.remove(os.path.join(tmp, "big-sims.npy"))


def _label_mates(labels: np.ndarray, most: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows sorted by label, where each row's label starts in that order, how many of its label to
    take: at most `most`)."""
    order = np.argsort(labels, kind="stable")
    _, first_at, inverse, counts = np.unique(labels[order], return_index=True, return_inverse=True,
                                             return_counts=True)
    starts = np.empty(len(labels), np.int64)
    taken = np.empty(len(labels), np.int64)
    starts[order] = first_at[inverse]
    taken[order] = np.minimum(counts[inverse], most)
    return order, starts, taken


def _refined(x: np.ndarray, rows: np.ndarray, first: np.ndarray, k: int, labels: Optional[np.ndarray],
             mates: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]], block: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """Each row's k most similar among its listed neighbours and theirs (w + w^2 candidates, w the
    lists' width; with `mates`, also the lists of up to that many rows of its label), as `top_k`
    defines them; `block` rows at a time (block x candidates x D floats in memory)."""
    items = np.empty((len(rows), k), np.int64)
    sims = np.empty((len(rows), k), np.float32)
    for b in range(0, len(rows), block):
        r = rows[b:b + block]
        own = np.asarray(first[r], np.int64)
        parts = [own, np.asarray(first[own.reshape(-1)], np.int64).reshape(len(r), -1)]
        if mates is not None:
            order, starts, taken = mates
            most = int(taken[r].max())
            slot = np.arange(most)[None, :]
            mate = order[np.minimum(starts[r][:, None] + slot, len(order) - 1)]
            mate = np.where(slot < taken[r][:, None], mate, r[:, None])  # padding: the row itself
            parts.append(np.asarray(first[mate.reshape(-1)], np.int64).reshape(len(r), -1))
        cand = np.sort(np.concatenate(parts, axis=1), axis=1)
        s = np.matmul(x[cand], x[r][:, :, None])[..., 0]
        bad = cand == r[:, None]
        bad[:, 1:] |= cand[:, 1:] == cand[:, :-1]  # duplicates
        if labels is not None:
            bad |= labels[cand] == labels[r][:, None]
        s[bad] = -np.inf  # the row's own pass-1 k are never bad: at least k candidates remain
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        items[b:b + block] = np.take_along_axis(np.take_along_axis(cand, top, axis=1), order, axis=1)
        sims[b:b + block] = np.take_along_axis(top_sims, order, axis=1)
    return items, sims


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
