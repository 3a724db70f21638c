"""The batch's other queries as neighbours that show no known landmark (`indexer.predict --batch_neighbours`).

A photo of a place the index does not hold still finds references that look like it (another
building in the same style, another old town), and its vote trusts them. But a batch of test
photos rarely holds one photo of a place: a tourist takes several, and a place absent from the
index is then nearer to its own other photos in the batch than to any reference. So each query's
k nearest neighbours are searched among the references *and* the batch's other queries; a query
neighbour carries no landmark, so it takes one of the k voting places and votes for nothing, and
the references it pushes beyond k stop voting. A query of a known landmark keeps its vote where its
references are at least as near as the batch's other photos; a query whose nearest are unlabelled
photos of the same kind ranks lower. The references' spatial verification (first `verify_k`
neighbours) still counts whether they vote or not, so a query that verifies keeps that evidence.

This is transductive: an answer depends on the other photos of its batch (a `make predict` run,
one `Recognizer.predict` call). A batch of one changes nothing. The query neighbours come from
`neighbours.top_k`: exact below `NeighbourSettings.exact_below` queries, a temporary Annoy index
over the batch from there up (about Q log Q), so a million-query batch stays sub-quadratic.
"""

from __future__ import annotations

import numpy as np

from indexer.ranking import neighbours


def reference_slots(reference_sims: np.ndarray, query_vectors: np.ndarray, k: int,
                    settings: neighbours.NeighbourSettings = neighbours.NeighbourSettings()) -> np.ndarray:
    """int64 [Q]: how many of each query's reference neighbours (cosines [Q, R], nearest first;
    padding -inf) stay among its `k` nearest when the batch's other queries (unit vectors [Q, D],
    row q = query q) are neighbours too. A reference ties with a query neighbour in its favour."""
    refs = np.asarray(reference_sims, np.float32)
    n_queries, n_refs = refs.shape
    if len(query_vectors) != n_queries:
        raise ValueError(f"{n_queries} queries' reference similarities but {len(query_vectors)} query vectors")
    if k < 1:
        raise ValueError(f"k={k}: at least 1 neighbour")
    slots = np.full(n_queries, min(k, n_refs), np.int64)
    if n_queries < 2:
        return slots
    x = np.asarray(query_vectors, np.float32)
    for start, _, sims in neighbours.top_k(x, min(k, n_queries - 1), None, settings):
        part = refs[start:start + len(sims)]
        joint = np.concatenate([part, sims.astype(np.float32)], axis=1)
        nearest = np.argsort(-joint, axis=1, kind="stable")[:, :k]  # stable: references first on ties
        slots[start:start + len(sims)] = (nearest < n_refs).sum(axis=1)
    return slots


def mask_beyond(landmarks: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """`landmarks` [Q, k] with every neighbour at or beyond its row's slot count set to -1 (votes for nothing)."""
    landmarks = np.asarray(landmarks)
    keep = np.arange(landmarks.shape[1])[None, :] < np.asarray(slots)[:, None]
    return np.where(keep, landmarks, -1)
