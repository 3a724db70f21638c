"""Voting neighbours into one landmark and a confidence (indexer/ranking/vote.py), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.ranking.vote import METHODS, rank_landmarks, vote


def test_sum_adds_similarities_per_landmark_over_k():
    landmark, conf = vote([3, 5, 5], [0.9, 0.6, 0.5], "sum")
    assert landmark == 5 and conf == pytest.approx(1.1 / 3)
    assert rank_landmarks([3, 5, 5], [0.9, 0.6, 0.5], "sum") == [(5, pytest.approx(1.1 / 3)), (3, pytest.approx(0.3))]


def test_count_and_nearest():
    assert vote([3, 5, 5], [0.9, 0.6, 0.5], "count") == (5, pytest.approx(2 / 3))
    assert vote([3, 5, 5], [0.9, 0.6, 0.5], "nearest") == (3, pytest.approx(0.9))


def test_ties_go_to_the_smaller_landmark():
    assert vote([2, 1], [0.5, 0.5], "sum") == (1, pytest.approx(0.25))
    assert vote([2, 1], [0.5, 0.5], "count") == (1, pytest.approx(0.5))


def test_negative_similarity_counts_as_zero_and_padding_is_ignored():
    assert vote([4], [-0.3], "sum") == (4, 0.0)
    assert vote([7, -1], [0.8, float("-inf")], "sum") == (7, pytest.approx(0.4))
    assert vote([-1, -1], [float("-inf")] * 2, "sum") is None


def test_confidence_is_within_unit_interval():
    rng = np.random.default_rng(0)
    for method in METHODS:
        for _ in range(200):
            k = int(rng.integers(1, 12))
            _, conf = vote(rng.integers(0, 4, k).tolist(), rng.uniform(-1, 1.2, k).tolist(), method)
            assert 0.0 <= conf <= 1.0


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown vote method"):
        vote([1], [1.0], "median")
