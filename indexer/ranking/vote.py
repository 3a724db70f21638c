"""Turn a query's nearest reference images into one landmark and a confidence in [0, 1].

Methods (`--vote`):
  sum      landmark score = sum of its neighbours' similarities (cosine clipped to [0, 1]);
           confidence = best score / k. High only when many neighbours agree AND are close, so a
           distractor whose neighbours are far away or disagree gets a low confidence.
  count    score = number of its neighbours; confidence = best count / k (ignores distances).
  nearest  the nearest neighbour's landmark; confidence = its similarity.
Ties go to the smaller landmark id, so results do not depend on the index's internal order.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

METHODS = ("sum", "count", "nearest")


def rank_landmarks(
    landmarks: Sequence[int], similarities: Sequence[float], method: str = "sum"
) -> List[Tuple[int, float]]:
    """Every landmark among the neighbours with its confidence, best first.

    `landmarks[i]`, `similarities[i]` describe neighbour i (nearest first); padding entries
    (landmark id < 0 or similarity -inf) are ignored; k is the number of neighbours given.
    """
    if method not in METHODS:
        raise ValueError(f"unknown vote method {method!r}; expected one of {METHODS}")
    k = len(landmarks)
    scores: Dict[int, float] = {}
    for rank, (landmark, sim) in enumerate(zip(landmarks, similarities)):
        if landmark < 0 or not np.isfinite(sim):
            continue
        sim = float(min(1.0, max(0.0, sim)))
        if method == "sum":
            scores[int(landmark)] = scores.get(int(landmark), 0.0) + sim / k
        elif method == "count":
            scores[int(landmark)] = scores.get(int(landmark), 0.0) + 1.0 / k
        else:
            scores.setdefault(int(landmark), sim)  # first time seen = that landmark's nearest
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def vote(landmarks: Sequence[int], similarities: Sequence[float], method: str = "sum") -> Optional[Tuple[int, float]]:
    """(landmark, confidence) of the winner, or None when there are no neighbours."""
    ranked = rank_landmarks(landmarks, similarities, method)
    return (ranked[0][0], min(1.0, ranked[0][1])) if ranked else None
