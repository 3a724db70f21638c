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
  of its `dba_k` nearest references (itself included) before the index is built. Exact search in
  chunks: O(N^2 D) time, fine for hundreds of thousands of references, not for GLDv2's 4M.

Pure NumPy: the caller brings the neighbours (Annoy at predict time, exact search at build time).
"""

from __future__ import annotations

import numpy as np


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


def database_augmentation(vectors: np.ndarray, k: int, alpha: float, chunk: int = 2048) -> np.ndarray:
    """Every row replaced by the weighted sum of its `k` nearest rows (by cosine, itself included:
    it is its own nearest, weight 1). k < 2 returns the rows unchanged (normalised)."""
    x = _normalise(np.asarray(vectors, np.float64))
    if k < 2 or len(x) < 2:
        return x
    k = min(k, len(x))
    out = np.empty_like(x)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        sims = block @ x.T
        sims[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf  # self first
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        top_sims[np.isinf(top_sims)] = 1.0
        w = np.clip(top_sims, 0.0, 1.0) ** alpha * (top_sims > 0)
        out[start:start + chunk] = _normalise(np.einsum("nk,nkd->nd", w, x[top].astype(np.float64)))
    return out
