"""The non-landmark penalty and the margin confidence on hand-built cases, scored by GAP."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.ranking import confidence
from indexer.evaluation.metrics import gap


def test_reference_penalty_is_the_mean_of_the_top_k_similarities():
    refs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    others = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]], np.float32)
    got = confidence.reference_penalties(refs, others, k=2, chunk=1)
    np.testing.assert_allclose(got, [(1.0 + 0.6) / 2, (0.8 + 0.0) / 2], atol=1e-6)
    np.testing.assert_allclose(confidence.reference_penalties(refs, others, k=99), [1.6 / 3, -0.2 / 3], atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        confidence.reference_penalties(refs, others[:0])


def test_penalty_ranks_a_distractor_that_matches_generic_references_last():
    # references 0-2: landmark 7 (distinctive); 3-5: landmark 9, photos that look like generic scenes
    penalties = np.array([0.1, 0.1, 0.1, 0.7, 0.7, 0.7], np.float32)
    items = np.array([[0, 1, -1],   # a view of landmark 7 (one padding slot)
                      [3, 4, 5],    # a distractor, close to the generic-looking references
                      [3, 4, 5]])   # a view of landmark 9
    sims = np.array([[0.8, 0.75, -np.inf], [0.9, 0.88, 0.85], [0.98, 0.97, 0.96]], np.float32)
    landmarks = np.array([7, 7, 7, 9, 9, 9])
    solution = {"q7": frozenset({7}), "distractor": frozenset(), "q9": frozenset({9})}

    def answers(s):
        return {q: confidence.decide(landmarks[i].tolist(), row.tolist()) for q, i, row in
                zip(solution, np.maximum(items, 0), s)}

    plain = answers(sims)
    assert plain["distractor"][1] > plain["q7"][1]  # the distractor outranks a right answer
    assert gap(plain, solution) == pytest.approx((1 / 1 + 2 / 3) / 2)  # q9, distractor, q7

    lowered = confidence.penalise(items, sims, penalties, weight=1.0)
    assert lowered[0, 2] == -np.inf and lowered[0, 0] == pytest.approx(0.7)
    fixed = answers(lowered)
    assert fixed["distractor"][1] < min(fixed["q7"][1], fixed["q9"][1])
    assert gap(fixed, solution) == pytest.approx(1.0)  # both right answers ahead of the distractor


def test_margin_confidence_is_the_lead_over_the_runner_up():
    # 4 neighbours: landmark 1 twice (0.9, 0.8), landmark 2 twice (0.7, 0.6): sum vote 1.7/4 vs 1.3/4
    assert confidence.decide([1, 2, 1, 2], [0.9, 0.7, 0.8, 0.6], "sum", "margin") == (1, pytest.approx(0.1))
    assert confidence.decide([1, 2, 1, 2], [0.9, 0.7, 0.8, 0.6], "sum", "score") == (1, pytest.approx(0.425))
    assert confidence.decide([5, 5], [0.5, 0.5], "sum", "margin") == (5, pytest.approx(0.5))  # no runner-up
    assert confidence.decide([-1], [-np.inf], "sum", "margin") is None
    with pytest.raises(ValueError, match="confidence"):
        confidence.decide([1], [0.5], "sum", "bogus")


def test_other_landmark_penalty_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    refs = rng.normal(size=(23, 8)).astype(np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=23)
    want = []
    for i in range(23):
        others = sorted((float(refs[i] @ refs[j]) for j in range(23) if labels[j] != labels[i]), reverse=True)
        want.append(np.mean(others[:3]))
    np.testing.assert_allclose(confidence.other_landmark_penalties(refs, labels, k=3, chunk=5), want, atol=1e-6)
    # k is capped at the fewest other-landmark references any reference has (here 1: each of
    # landmark 0's two references has one), so the third reference takes its best, 0.6, not 0.3
    two = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(confidence.other_landmark_penalties(two, np.array([0, 0, 1]), k=5),
                               [0.0, 0.6, 0.6], atol=1e-6)
    with pytest.raises(ValueError, match="same landmark"):
        confidence.other_landmark_penalties(two, np.array([2, 2, 2]))
