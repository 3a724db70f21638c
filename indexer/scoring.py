"""From query embeddings to answers: search, optional re-ranking, the non-landmark penalty, the vote.

One function for `indexer.predict` (and anyone embedding queries themselves), so every option is
applied in one order: search top k -> alpha-query expansion and a second search (`rerank="aqe"`)
-> each neighbour's similarity lowered by its reference's non-landmark penalty (when the index has
one and `penalty_weight` > 0) -> the vote and its confidence (indexer/confidence.py).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from indexer import confidence, rerank
from indexer.index_dir import Index

RERANKS = ("none", "aqe")


@dataclasses.dataclass(frozen=True)
class Scoring:
    k: int = 10  # neighbours that vote
    search_k: int = 2000  # Annoy nodes inspected per query and shard
    vote: str = "sum"  # indexer/vote.py
    rerank: str = "none"  # none | aqe
    aqe_k: int = 2  # neighbours added to the query
    aqe_alpha: float = 3.0  # their weight: similarity ** alpha
    confidence: str = "score"  # score | margin (indexer/confidence.py)
    penalty_weight: float = 1.0  # x the reference's non-landmark penalty, when the index has penalties

    def __post_init__(self) -> None:
        if self.rerank not in RERANKS:
            raise ValueError(f"--rerank={self.rerank}: expected one of {RERANKS}")
        if self.confidence not in confidence.CONFIDENCES:
            raise ValueError(f"--confidence={self.confidence}: expected one of {confidence.CONFIDENCES}")
        if self.k < 1 or self.aqe_k < 0 or self.aqe_alpha < 0 or self.penalty_weight < 0:
            raise ValueError("--k >= 1, --aqe_k >= 0, --aqe_alpha >= 0, --penalty_weight >= 0")


def answer(index: Index, vectors: np.ndarray, scoring: Scoring
           ) -> Tuple[np.ndarray, np.ndarray, List[Optional[Tuple[int, float]]]]:
    """Neighbour items [Q, k], (adjusted) similarities [Q, k] and (landmark, confidence) per query."""
    items, sims = index.searcher.query(vectors, scoring.k, scoring.search_k)
    if scoring.rerank == "aqe" and scoring.aqe_k > 0 and len(vectors):
        top = items[:, :scoring.aqe_k]
        expanded = rerank.alpha_query_expansion(vectors, index.searcher.item_vectors(top), sims[:, :scoring.aqe_k],
                                                scoring.aqe_k, scoring.aqe_alpha)
        items, sims = index.searcher.query(expanded, scoring.k, scoring.search_k)
    penalties = index.extras.get(confidence.PENALTIES)
    if penalties is not None and scoring.penalty_weight > 0:
        sims = confidence.penalise(items, sims, penalties, scoring.penalty_weight)
    landmarks = np.where(items >= 0, index.landmark_ids[np.maximum(items, 0)], -1)
    votes = [confidence.decide(l.tolist(), s.tolist(), scoring.vote, scoring.confidence)
             for l, s in zip(landmarks, sims)]
    return items, sims, votes
