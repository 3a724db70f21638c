"""Re-ranking on an existing k-NN index, without retraining: alpha-query expansion and
database-side augmentation (Radenović et al., "Fine-tuning CNN image retrieval with no human
annotation", 2018; used by the Google Landmark Retrieval/Recognition winners).

Both replace a unit vector by the normalised, similarity-weighted sum of itself and its nearest
neighbours: `v' = normalise(v + sum_i max(0, s_i)^alpha x_i)`, the weights stressing the closest
ones (alpha = 0 weighs them all alike). A landmark photographed many times pulls its references
(DBA) and the queries that reach them (AQE) towards the landmark's common appearance, so the
second search finds views the first one missed.

- `alpha_query_expansion` (`indexer.predict --rerank=aqe --aqe_k --aqe_alpha`): a query is expanded
  with its first `aqe_k` neighbours' reference vectors and searched again.
- `database_augmentation` (`indexer.build --dba_k`): every reference is replaced by the weighted sum
  of its `dba_k` nearest references (itself included) before the index is built. The neighbours
  come from indexer/ranking/neighbours.py: exact search below `--neighbours_exact_below` references
  (O(N^2 D)), a temporary Annoy index from there up (about N log N), one chunk of rows at a time.

NumPy only: the caller brings the neighbours (Annoy at predict time, indexer/ranking/neighbours.py at build time).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np

from indexer.ranking import neighbours


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def expand(vectors: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray, alpha: float) -> np.ndarray:
    """normalise(v + sum_i max(0, s_i)^alpha x_i) per row.

    vectors [N, D]; neighbours [N, k, D]; similarities [N, k] (padding entries: -inf or NaN, weight 0).
    """
    s = np.nan_to_num(np.asarray(similarities, np.float64), nan=0.0, neginf=0.0, posinf=1.0)
    w = np.clip(s, 0.0, 1.0) ** alpha * (s > 0)
    summed = np.asarray(vectors, np.float64) + np.einsum("nk,nkd->nd", w, np.asarray(neighbours, np.float64))
    return _normalise(summed)


def alpha_query_expansion(queries: np.ndarray, neighbour_vectors: np.ndarray, similarities: np.ndarray,
                          k: int, alpha: float) -> np.ndarray:
    """Expanded queries [Q, D] from their first `k` neighbours (vectors [Q, >=k, D], similarities [Q, >=k])."""
    if k < 1:
        return _normalise(np.asarray(queries, np.float64))
    return expand(queries, neighbour_vectors[:, :k], similarities[:, :k], alpha)


def database_augmentation(vectors: np.ndarray, k: int, alpha: float, chunk: int = 2048,
                          search: neighbours.NeighbourSettings = neighbours.NeighbourSettings()) -> np.ndarray:
    """Every row replaced by the weighted sum of its `k` nearest rows (by cosine, itself included:
    it is its own nearest, weight 1). k < 2 returns the rows unchanged (normalised). The k - 1 others
    come from `neighbours.top_k` (exact below `search.exact_below` rows, else Annoy)."""
    x = _normalise(np.asarray(vectors, np.float32))  # (float32: no N x D float64 copy)
    if k < 2 or len(x) < 2:
        return x
    settings = dataclasses.replace(search, chunk=min(chunk, search.chunk))
    return augment(x, neighbours.top_k(x, min(k, len(x)) - 1, None, settings), alpha)


def augment(x: np.ndarray, chunks: Iterable[neighbours.Chunk], alpha: float,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """float32 [N, D]: each unit row plus its chunk's neighbours (weight max(0, s)^alpha), normalised,
    written into `out` (e.g. a memory-mapped file) when given."""
    out = np.empty(x.shape, np.float32) if out is None else out
    for start, items, sims in chunks:
        out[start:start + len(items)] = augment_rows(x, np.arange(start, start + len(items)), items, sims, alpha)
    return out


def augment_rows(x: np.ndarray, rows: np.ndarray, items: np.ndarray, sims: np.ndarray, alpha: float) -> np.ndarray:
    """float32 [len(rows), D]: x[rows] plus their neighbours x[items] weighted max(0, s)^alpha, normalised."""
    w = np.clip(sims, 0.0, 1.0).astype(np.float64) ** alpha * (sims > 0)
    return _normalise(x[rows].astype(np.float64) + np.einsum("nk,nkd->nd", w, x[items].astype(np.float64)))
