"""From query embeddings to answers: search, optional re-ranking, the non-landmark penalty, the vote.

One function for `indexer.predict` (and anyone embedding queries themselves), so every option is
applied in one order: search top k -> alpha-query expansion and a second search (`rerank="aqe"`)
-> each neighbour's similarity lowered by its reference's non-landmark penalty (when the index has
one and `penalty_weight` > 0) -> the vote and its confidence (indexer/ranking/confidence.py), with the
spatial verification of the first `verify_k` neighbours added when the caller ran it
(`neighbour_inliers`, indexer/ranking/verify.py: it needs the query images, not only their vectors).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, List, Optional, Tuple

import numpy as np

from indexer import threads
from indexer.ranking import batch_neighbours, confidence, rerank, verify
from indexer.store.index_dir import Index
from indexer.ranking.local_features import Extractor, max_features_of, unpack
from pipelines.cli import console, flag_checks

RERANKS = ("none", "aqe")


@dataclasses.dataclass(frozen=True)
class Scoring:
    k: int = 10  # neighbours that vote
    search_k: int = 2000  # Annoy nodes inspected per query and shard
    vote: str = "sum"  # indexer/ranking/vote.py
    rerank: str = "none"  # none | aqe
    aqe_k: int = 2  # neighbours added to the query
    aqe_alpha: float = 3.0  # their weight: similarity ** alpha
    confidence: str = "score"  # score | margin (indexer/ranking/confidence.py)
    penalty_weight: float = 1.0  # x the reference's non-landmark penalty, when the index has penalties
    verify_k: int = 10  # neighbours spatially verified, when the index has local features (0 = off)
    verify_weight: float = 2.0  # the verification's weight in a landmark's score (vote's: 1); docs/quality.md
    verify_cap: int = 40  # inliers that count as a full match
    batch_neighbours: bool = False  # the batch's other queries take voting places (indexer/ranking/batch_neighbours.py)

    def __post_init__(self) -> None:
        if self.rerank not in RERANKS:
            raise flag_checks.SettingsError(f"--rerank={self.rerank}: expected one of {RERANKS}")
        if self.confidence not in confidence.CONFIDENCES:
            raise flag_checks.SettingsError(f"--confidence={self.confidence}: expected one of {confidence.CONFIDENCES}")
        if flag_checks.integer("--k", self.k) < 1:
            raise flag_checks.SettingsError(f"--k={self.k}: at least 1 neighbour must vote")
        if self.search_k != -1 and flag_checks.integer("--search_k", self.search_k) < self.k:
            raise flag_checks.SettingsError(
                f"--search_k={self.search_k}: -1 (Annoy's default, n_trees * k) or at least --k={self.k}")
        flag_checks.integer("--aqe_k", self.aqe_k, 0)
        flag_checks.number("--aqe_alpha", self.aqe_alpha, 0)
        flag_checks.number("--penalty_weight", self.penalty_weight, 0)
        flag_checks.integer("--verify_k", self.verify_k, 0)
        flag_checks.number("--verify_weight", self.verify_weight, 0)
        flag_checks.integer("--verify_cap", self.verify_cap, 1)


def search(index: Index, vectors: np.ndarray, scoring: Scoring) -> Tuple[np.ndarray, np.ndarray]:
    """Neighbour items [Q, k] (-1: none) and their (re-ranked, penalised) similarities [Q, k]."""
    items, sims = index.searcher.query(vectors, scoring.k, scoring.search_k)
    if scoring.rerank == "aqe" and scoring.aqe_k > 0 and len(vectors):
        top = items[:, :scoring.aqe_k]
        expanded = rerank.alpha_query_expansion(vectors, index.searcher.item_vectors(top), sims[:, :scoring.aqe_k],
                                                scoring.aqe_k, scoring.aqe_alpha)
        items, sims = index.searcher.query(expanded, scoring.k, scoring.search_k)
    penalties = index.extras.get(confidence.PENALTIES)
    if penalties is not None and scoring.penalty_weight > 0:
        sims = confidence.penalise(items, sims, penalties, scoring.penalty_weight)
    return items, sims


def votes(index: Index, items: np.ndarray, sims: np.ndarray, scoring: Scoring,
          inliers: Optional[np.ndarray] = None, slots: Optional[np.ndarray] = None
          ) -> List[Optional[Tuple[int, float]]]:
    """(landmark, confidence) per query from its neighbours; `inliers` [Q, k] (-1: not verified),
    from `neighbour_inliers`, adds each landmark's best verification to its score; `slots` [Q]
    (`batch_slots`): only each query's first slots[q] neighbours vote, the rest of its k places
    went to other queries of the batch (a query left with no vote answers its nearest
    reference's landmark at confidence 0)."""
    landmarks = np.where(items >= 0, index.landmark_ids[np.maximum(items, 0)], -1)
    voting = landmarks if slots is None else batch_neighbours.mask_beyond(landmarks, slots)
    if inliers is None:
        out = [confidence.decide(v.tolist(), s.tolist(), scoring.vote, scoring.confidence)
               for v, s in zip(voting, sims)]
    else:
        checks = verify.verification_scores(inliers, scoring.verify_cap)
        out = [confidence.decide(v.tolist(), s.tolist(), scoring.vote, scoring.confidence,
                                 verify.landmark_bonus(l.tolist(), c.tolist()), scoring.verify_weight)
               for v, l, s, c in zip(voting, landmarks, sims, checks)]
    if slots is not None:
        out = [o if o is not None or l[0] < 0 else (int(l[0]), 0.0) for o, l in zip(out, landmarks)]
    return out


def batch_slots(index: Index, items: np.ndarray, sims: np.ndarray, vectors: np.ndarray,
                scoring: Scoring) -> np.ndarray:
    """int64 [Q]: how many of each query's reference neighbours keep their vote when the batch's
    other queries (`vectors`, the query vectors in the same order) are neighbours too
    (indexer/ranking/batch_neighbours.py). The references are compared by their cosine before
    the non-landmark penalty (`sims` as `search` returns them, penalised)."""
    raw = np.asarray(sims, np.float32)
    penalties = index.extras.get(confidence.PENALTIES)
    if penalties is not None and scoring.penalty_weight > 0:  # undo `search`'s penalty: the same call, weight negated
        raw = confidence.penalise(items, raw, penalties, -scoring.penalty_weight)
    return batch_neighbours.reference_slots(raw, vectors, scoring.k)


def answer(index: Index, vectors: np.ndarray, scoring: Scoring
           ) -> Tuple[np.ndarray, np.ndarray, List[Optional[Tuple[int, float]]]]:
    """Neighbour items [Q, k], (adjusted) similarities [Q, k] and (landmark, confidence) per query,
    without spatial verification."""
    items, sims = search(index, vectors, scoring)
    return items, sims, votes(index, items, sims, scoring)


def verifies(index: Index, scoring: Scoring) -> bool:
    """Whether answers from this index get spatially verified (it has local features, verify_k > 0)."""
    return index.local_features is not None and scoring.verify_k > 0


def neighbour_inliers(index: Index, items: np.ndarray, queries: Iterable[Tuple[int, bytes]],
                      scoring: Scoring, workers: Optional[int] = None,
                      progress: Optional[console.Progress] = None) -> np.ndarray:
    """int32 [Q, k]: inliers between each given query (row q, its encoded image as stored) and its
    first `verify_k` neighbours (read from the index's local-feature store), on `workers` threads
    (all cores by default), counting queries on `progress`; -1 elsewhere (neighbours past verify_k,
    padding, queries not given)."""
    store = index.local_features
    if store is None:
        raise ValueError(f"{index.directory} has no local features: build it with --local_features")
    max_features = max_features_of(store)

    def make_worker():
        extract, verifier = Extractor(max_features), verify.Verifier()

        def check(query: Tuple[int, bytes]) -> Tuple[int, List[int]]:
            q, image = query
            features = extract(image)
            return q, [verifier.inliers(features, unpack(store[int(item)])) if item >= 0 else -1
                       for item in items[q, :scoring.verify_k]]
        return check

    out = np.full(items.shape, -1, np.int32)
    for q, row in threads.ordered_map(make_worker, queries, workers):
        out[q, :len(row)] = row
        if progress is not None:
            progress.update(1)
    return out
