"""Confidences that rank queries showing no known landmark below the right answers (what GAP rewards).

Two methods, usable together:

- **Non-landmark penalty** (Google Landmark Recognition 2020, 1st place): with a set of photos known
  to show no landmark (`indexer.build --nonlandmark_csv`), each reference gets a penalty, its mean
  similarity to its `k` most similar non-landmark photos (`reference_penalties`, stored in the
  index folder as `penalties.npy`). At prediction every neighbour's similarity is lowered by
  `weight` x its penalty (`penalise`), so answers that rest on references resembling generic
  scenes lose confidence, and a query that only finds such references ranks last.
- **Other-landmark penalty** (needs no such set, `indexer.build --other_landmark_penalty`): the same
  penalty with the other landmarks' references standing in for the non-landmark photos
  (`other_landmark_penalties`): a reference that looks like photos of other landmarks shows what
  many places share (a generic facade, a street, a sky line), so a query that only matches it may
  show any of them, or none.
- **Margin** (needs no such set, `indexer.predict --confidence=margin`): the winner's score minus
  the runner-up landmark's. A landmark query's neighbours agree on one landmark; a distractor's
  neighbours, with no true match among the references, tend to split between several.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from indexer.ranking import neighbours
from indexer.ranking.vote import rank_landmarks

PENALTIES = "penalties"  # the index folder's extra (index_dir.py): penalties.npy
CONFIDENCES = ("score", "margin")


def _mean_top_k(rows: np.ndarray, others: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """float32 [len(rows)]: each row's mean cosine to its `k` most similar `others`, `chunk` rows
    at a time."""
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), chunk):
        sims = rows[start:start + chunk] @ others.T
        out[start:start + chunk] = (-np.partition(-sims, k - 1, axis=1)[:, :k]).mean(axis=1)
    return out


def reference_penalties(references: np.ndarray, nonlandmarks: np.ndarray, k: int = 5,
                        chunk: int = 4096) -> np.ndarray:
    """float32 [N]: each reference's mean cosine to its `k` most similar non-landmark vectors
    (unit vectors; k capped at the set's size)."""
    others = np.asarray(nonlandmarks, np.float32)
    if len(others) == 0:
        raise ValueError("the non-landmark set is empty: no penalty can be computed")
    return _mean_top_k(np.asarray(references, np.float32), others, max(1, min(k, len(others))), chunk)


def other_landmark_penalties(references: np.ndarray, landmark_ids: np.ndarray, k: int = 5,
                             chunk: int = 1024,
                             search: neighbours.NeighbourSettings = neighbours.NeighbourSettings()) -> np.ndarray:
    """float32 [N]: each reference's mean cosine to its `k` most similar references of OTHER
    landmarks (k capped at how many there are). The neighbours come from `neighbours.top_k`: exact
    below `search.exact_below` references (O(N^2 D) time, O(chunk N) memory), from a temporary Annoy
    index from there up (about N log N), `chunk` rows at a time."""
    refs = np.asarray(references, np.float32)
    labels = np.asarray(landmark_ids, np.int64)
    if len(refs) != len(labels):
        raise ValueError(f"{len(refs)} references but {len(labels)} landmark ids")
    fewest_others = len(labels) - np.unique(labels, return_counts=True)[1].max() if len(labels) else 0
    if fewest_others < 1:
        raise ValueError("every reference shows the same landmark: no other landmark to compare with")
    k = max(1, min(k, int(fewest_others)))
    settings = dataclasses.replace(search, chunk=min(chunk, search.chunk))
    return mean_similarities(neighbours.top_k(refs, k, labels, settings), len(refs))


def mean_similarities(chunks: Iterable[neighbours.Chunk], n: int) -> np.ndarray:
    """float32 [n]: each row's mean neighbour cosine, from `neighbours.top_k`'s chunks."""
    out = np.empty(n, np.float32)
    for start, _, sims in chunks:
        out[start:start + len(sims)] = sims.mean(axis=1)
    return out


def penalise(items: np.ndarray, similarities: np.ndarray, penalties: np.ndarray, weight: float) -> np.ndarray:
    """Neighbour similarities [Q, k] minus `weight` x each neighbour's penalty; padding (item -1) kept."""
    items = np.asarray(items, np.int64)
    lowered = np.asarray(similarities, np.float32) - weight * penalties[np.maximum(items, 0)]
    return np.where(items >= 0, lowered, similarities).astype(np.float32)


def decide(landmarks: Sequence[int], similarities: Sequence[float], vote: str = "sum",
           confidence: str = "score", bonus: Optional[Mapping[int, float]] = None,
           bonus_weight: float = 1.0) -> Optional[Tuple[int, float]]:
    """(landmark, confidence in [0, 1]) of one query's neighbours, or None without neighbours.

    `score`: the vote's own score (indexer/ranking/vote.py). `margin`: that score minus the runner-up
    landmark's (the whole score when only one landmark is among the neighbours). `bonus`: each
    landmark's spatial-verification score in [0, 1] (indexer/ranking/verify.py); every landmark's score
    becomes (vote + bonus_weight x bonus) / (1 + bonus_weight) before the winner is chosen, so a
    landmark whose photo verifies can overtake one that only looks alike.
    """
    if confidence not in CONFIDENCES:
        raise ValueError(f"unknown confidence {confidence!r}; expected one of {CONFIDENCES}")
    ranked: List[Tuple[int, float]] = rank_landmarks(landmarks, similarities, vote)
    if bonus is not None:  # a verified landmark competes even with no vote (its places taken: batch_neighbours.py)
        voted = {landmark for landmark, _ in ranked}
        ranked += [(int(landmark), 0.0) for landmark in sorted(bonus) if landmark not in voted and landmark >= 0]
    if not ranked:
        return None
    if bonus is not None:
        ranked = sorted(((landmark, (score + bonus_weight * bonus.get(landmark, 0.0)) / (1.0 + bonus_weight))
                         for landmark, score in ranked), key=lambda item: (-item[1], item[0]))
    best, score = ranked[0]
    if confidence == "margin":
        score -= ranked[1][1] if len(ranked) > 1 else 0.0
    return best, float(min(1.0, max(0.0, score)))
