"""Several Annoy files over contiguous slices of the reference set, built in parallel and queried
together with their top-k merged.

One Annoy build is single-process and needs the whole index in memory; past a few million
references (GLDv2 has 4M+) `--num_shards` splits the set so each shard builds on its own cores
(Annoy releases the GIL while building and querying, so threads suffice) and could live on its
own machine. Shard s holds global items [offset_s, offset_s + n_s) as its local items 0..n_s-1.
With one shard this is exactly a plain Annoy index.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import List, Sequence, Tuple

import numpy as np

from indexer.store.annoy_index import METRIC, FileRecord, build_annoy, open_annoy


def shard_file_name(index: int, count: int) -> str:
    """File name of Annoy shard `index` of `count`."""
    return f"index-{index:05d}-of-{count:05d}.ann"


def shard_bounds(n_items: int, num_shards: int) -> List[Tuple[int, int]]:
    """[start, stop) of each shard: contiguous, sizes differing by at most one."""
    if not 1 <= num_shards <= n_items:
        raise ValueError(f"num_shards={num_shards} must be between 1 and the item count {n_items}")
    edges = np.linspace(0, n_items, num_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def build_sharded(
    vectors: np.ndarray, directory: str, n_trees: int, num_shards: int, seed: int = 0, deterministic: bool = False
) -> List[FileRecord]:
    """Build `num_shards` Annoy files in `directory` at once, sharing the machine's cores.
    `deterministic`: one thread per shard (Annoy's threads append their trees in the order they
    finish, so a multi-threaded build's file differs from run to run)."""
    cores = os.cpu_count() or 1
    jobs_each = 1 if deterministic else max(1, cores // num_shards)
    bounds = shard_bounds(len(vectors), num_shards)
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_shards) as pool:
        futures = [
            pool.submit(
                build_annoy,
                vectors[start:stop],
                os.path.join(directory, shard_file_name(s, num_shards)),
                n_trees,
                jobs_each,
                METRIC,
                seed + s,
            )
            for s, (start, stop) in enumerate(bounds)
        ]
        return [f.result() for f in futures]


class ShardedIndex:
    """Verified, loaded Annoy shards answering k-nearest-neighbour queries over all of them."""

    def __init__(self, directory: str, files: Sequence[FileRecord], dimension: int, n_trees: int,
                 verify_checksum: bool = True) -> None:
        self.dimension = dimension
        self._shards = [
            open_annoy(os.path.join(directory, f.name), f, dimension, n_trees, METRIC, verify_checksum) for f in files
        ]
        self._offsets = np.cumsum([0] + [f.n_items for f in files])[:-1]
        self.n_items = int(sum(f.n_items for f in files))

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """The stored vectors of global item numbers (any shape S) as float32 [*S, D]; item -1
        (padding) gives zeros."""
        items = np.asarray(items, np.int64)
        flat = items.reshape(-1)
        out = np.zeros((flat.size, self.dimension), np.float32)
        shard_of = np.searchsorted(self._offsets, flat, side="right") - 1
        for j, (item, s) in enumerate(zip(flat, shard_of)):
            if item >= 0:
                out[j] = self._shards[s].get_item_vector(int(item - self._offsets[s]))
        return out.reshape(*items.shape, self.dimension)

    def query(self, vectors: np.ndarray, k: int, search_k: int = -1, threads: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k neighbours of each row: (items [Q, k] int64, similarities [Q, k] float32).

        Similarity is the cosine, from Annoy's angular distance d = sqrt(2 - 2 cos). Rows are
        padded with item -1 and similarity -inf when the index holds fewer than k items.
        `search_k` is per shard (-1: Annoy's default, n_trees * k). Queries run on `threads`
        threads (0: one per core).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"queries must be [Q, {self.dimension}], got {vectors.shape}")
        items = np.full((len(vectors), k), -1, dtype=np.int64)
        sims = np.full((len(vectors), k), -np.inf, dtype=np.float32)

        def one(q: int) -> None:
            found_items, found_dist = [], []
            for shard, offset in zip(self._shards, self._offsets):
                ids, dist = shard.get_nns_by_vector(vectors[q], k, search_k=search_k, include_distances=True)
                found_items.extend(int(offset) + i for i in ids)
                found_dist.extend(dist)
            order = np.argsort(np.asarray(found_dist, dtype=np.float64), kind="stable")[:k]
            items[q, : len(order)] = np.asarray(found_items, dtype=np.int64)[order]
            dist = np.asarray(found_dist, dtype=np.float32)[order]
            sims[q, : len(order)] = 1.0 - dist * dist / 2.0

        workers = threads or os.cpu_count() or 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(vectors))))
        return items, sims
