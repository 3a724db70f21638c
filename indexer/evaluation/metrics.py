"""Recognition metrics as the Google Landmark Recognition competitions define them.

`solution` maps every test id to the set of its correct landmark ids (empty set: the image
shows no landmark). `predictions` maps a test id to (landmark, confidence); an id with no
prediction (the non-landmark answer) is simply absent.

GAP (Global Average Precision, Kaggle's micro-AP with one prediction per query): sort all
predictions by confidence, descending (ties: by id, then landmark, ascending, Kaggle's order);
GAP = 1/M * sum_i P(i) rel(i), where P(i) is the precision over the first i predictions,
rel(i) = 1 when prediction i is correct, and M = number of queries whose solution has a landmark.
A prediction made for a non-landmark query takes a rank (lowering the precision of everything
below it) but can never be correct; not predicting on it costs nothing.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Mapping, Sequence, Tuple

from indexer.ranking.vote import rank_landmarks

Solution = Mapping[str, FrozenSet[int]]
Predictions = Mapping[str, Tuple[int, float]]
Neighbours = Mapping[str, Sequence[Tuple[int, float]]]  # id -> [(landmark, similarity)], nearest first


def _with_landmark(solution: Solution) -> int:
    count = sum(1 for truth in solution.values() if truth)
    if count == 0:
        raise ValueError("the solution has no query with a landmark: GAP and accuracy are undefined")
    return count


def _check_known(ids, solution: Solution) -> None:
    unknown = [i for i in ids if i not in solution]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted id(s) are not in the solution, e.g. {unknown[0]!r}")


def gap(predictions: Predictions, solution: Solution) -> float:
    """Global Average Precision (see module docstring)."""
    return sum(gap_terms(predictions, solution).values())


def gap_terms(predictions: Predictions, solution: Solution) -> Dict[str, float]:
    """Each correct prediction's share of GAP, P(i) / M, by query id (they sum to `gap`); the
    report adds them up per landmark."""
    _check_known(predictions, solution)
    m = _with_landmark(solution)
    ranked = sorted(predictions.items(), key=lambda item: (-item[1][1], item[0], item[1][0]))
    correct = 0
    terms: Dict[str, float] = {}
    for i, (image_id, (landmark, _)) in enumerate(ranked, start=1):
        if landmark in solution[image_id]:
            correct += 1
            terms[image_id] = correct / i / m
    return terms


def accuracy(predictions: Predictions, solution: Solution) -> float:
    """Share of landmark queries whose prediction is correct (no prediction counts as wrong)."""
    _check_known(predictions, solution)
    m = _with_landmark(solution)
    hits = sum(1 for i, truth in solution.items() if truth and i in predictions and predictions[i][0] in truth)
    return hits / m


def topk_accuracy(
    neighbours: Neighbours, solution: Solution, ks: Sequence[int], method: str = "sum"
) -> Dict[int, float]:
    """For each k in `ks`: share of landmark queries whose correct landmark is among the k best
    landmarks voted from all their neighbours (top-1 = the vote's answer, with no threshold)."""
    _check_known(neighbours, solution)
    m = _with_landmark(solution)
    hits = {k: 0 for k in ks}
    for image_id, truth in solution.items():
        if not truth or image_id not in neighbours:
            continue
        ranked = [landmark for landmark, _ in rank_landmarks(*_split(neighbours[image_id]), method)]
        for k in ks:
            hits[k] += any(landmark in truth for landmark in ranked[:k])
    return {k: hits[k] / m for k in ks}


def accuracy_vs_neighbours(neighbours: Neighbours, solution: Solution, max_k: int, method: str = "sum") -> List[float]:
    """Top-1 accuracy of the vote over only the first n neighbours, for n = 1..max_k (the curve
    of how many neighbours to let vote)."""
    _check_known(neighbours, solution)
    m = _with_landmark(solution)
    curve = []
    for n in range(1, max_k + 1):
        hits = 0
        for image_id, truth in solution.items():
            if truth and image_id in neighbours:
                ranked = rank_landmarks(*_split(neighbours[image_id][:n]), method)
                hits += bool(ranked) and ranked[0][0] in truth
        curve.append(hits / m)
    return curve


def _split(pairs: Sequence[Tuple[int, float]]) -> Tuple[List[int], List[float]]:
    return [p[0] for p in pairs], [p[1] for p in pairs]
