"""GAP, accuracy and top-k against hand-computed cases, non-landmark queries included."""

from __future__ import annotations

import pytest

from indexer.evaluation.metrics import accuracy, accuracy_vs_neighbours, gap, topk_accuracy

# d shows no landmark; e has one but gets no prediction.
SOLUTION = {"a": frozenset({1}), "b": frozenset({2}), "c": frozenset({3}), "d": frozenset(), "e": frozenset({5})}


def test_gap_counts_non_landmark_predictions_in_the_ranking_but_not_in_m():
    preds = {"a": (1, 0.9), "d": (7, 0.8), "b": (9, 0.7), "c": (3, 0.6)}
    # ranked a(right) d(wrong) b(wrong) c(right): (1/1 + 2/4) / M, M = 4 (a, b, c, e)
    assert gap(preds, SOLUTION) == pytest.approx((1 + 2 / 4) / 4)
    # answering "no landmark" on d costs nothing and lifts c: (1/1 + 2/3) / 4
    del preds["d"]
    assert gap(preds, SOLUTION) == pytest.approx((1 + 2 / 3) / 4)


def test_gap_is_one_only_when_every_landmark_query_is_right_and_ranked_first():
    perfect = {"a": (1, 0.9), "b": (2, 0.8), "c": (3, 0.7), "e": (5, 0.6)}
    assert gap(perfect, SOLUTION) == pytest.approx(1.0)
    # the same answers with a wrong one on top
    assert gap({**perfect, "d": (1, 0.95)}, SOLUTION) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 5) / 4)
    assert gap({}, SOLUTION) == 0.0


def test_gap_ties_are_broken_by_id_as_kaggle_does():
    solution = {"x": frozenset({1}), "w": frozenset()}
    # equal confidence: w sorts before x, so x's right answer sits at rank 2
    assert gap({"x": (1, 0.5), "w": (2, 0.5)}, solution) == pytest.approx(0.5)


def test_gap_accepts_any_of_several_correct_landmarks():
    assert gap({"q": (7, 0.3)}, {"q": frozenset({6, 7})}) == pytest.approx(1.0)


def test_accuracy_counts_missing_predictions_as_wrong():
    preds = {"a": (1, 0.9), "b": (9, 0.7), "c": (3, 0.6), "d": (7, 0.8)}
    assert accuracy(preds, SOLUTION) == pytest.approx(2 / 4)


def test_unknown_ids_and_empty_solutions_are_refused():
    with pytest.raises(ValueError, match="not in the solution"):
        gap({"zz": (1, 0.5)}, SOLUTION)
    with pytest.raises(ValueError, match="no query with a landmark"):
        gap({}, {"d": frozenset()})


NEIGHBOURS = {
    "a": [(1, 0.9), (2, 0.8), (1, 0.1)],  # sum vote: 1 (1.0/3) before 2 (0.8/3)
    "b": [(2, 0.5), (4, 0.9), (4, 0.2)],  # 4 (1.1/3) before 2 (0.5/3): right only in top-2
    "c": [(6, 0.9)],  # never right
    "d": [(1, 0.9)],  # non-landmark: not counted
}


def test_topk_from_neighbours():
    assert topk_accuracy(NEIGHBOURS, SOLUTION, (1, 5)) == {1: pytest.approx(1 / 4), 5: pytest.approx(2 / 4)}


def test_accuracy_vs_number_of_voting_neighbours():
    # k=1: a->1 right, b->2 right; k=2: a->1 (0.9 vs 0.8), b->4 (0.9 vs 0.5); k=3 as top-1 above
    assert accuracy_vs_neighbours(NEIGHBOURS, SOLUTION, 3) == [pytest.approx(x) for x in (2 / 4, 1 / 4, 1 / 4)]
