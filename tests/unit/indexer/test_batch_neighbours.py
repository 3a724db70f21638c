"""The batch's other queries as voting places that show no landmark (indexer/ranking/batch_neighbours.py),
on hand-placed vectors, and the vote it changes (scoring.votes, confidence.decide)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from indexer.evaluation.metrics import gap
from indexer.ranking import batch_neighbours, confidence, neighbours, scoring


def unit(*rows):
    x = np.array(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_query_nearer_to_other_queries_than_to_references_gives_them_voting_places():
    # queries 0 and 1: two photos of one place (cosine 0.995); query 2 alone in its direction
    vectors = unit([1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0])
    ref_sims = np.array([[0.9, 0.8, 0.5],     # query 0: every reference farther than query 1
                         [0.999, 0.998, 0.997],  # query 1: all three references nearer than query 0
                         [0.7, 0.6, 0.5]], np.float32)
    got = batch_neighbours.reference_slots(ref_sims, vectors, k=3)
    assert got.tolist() == [2, 3, 3]  # q0: q1 (0.995), then 0.9 and 0.8 (0.5 loses its vote); q2: others at cosine 0
    assert batch_neighbours.reference_slots(ref_sims, vectors, k=1).tolist() == [0, 1, 1]


def test_slots_match_a_brute_force_merge_and_ties_go_to_the_reference():
    rng = np.random.default_rng(0)
    vectors = unit(*rng.normal(size=(40, 8)))
    ref_sims = -np.sort(-rng.uniform(-0.2, 1.0, size=(40, 6)).astype(np.float32), axis=1)
    qq = vectors @ vectors.T
    np.fill_diagonal(qq, -np.inf)
    for k in (1, 4, 6):
        want = []
        for q in range(40):
            merged = sorted([(-s, 0) for s in ref_sims[q]] + [(-s, 1) for s in qq[q]])[:k]
            want.append(sum(1 for _, kind in merged if kind == 0))
        assert batch_neighbours.reference_slots(ref_sims, vectors, k).tolist() == want
    pair = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)  # their cosine is float32(0.6) in any order of sums
    tie = np.full((2, 1), np.float32(0.6))
    assert batch_neighbours.reference_slots(tie, pair, k=1).tolist() == [1, 1]
    assert batch_neighbours.reference_slots(tie - 1e-6, pair, k=1).tolist() == [0, 0]


def test_a_batch_of_one_and_padding_change_nothing():
    assert batch_neighbours.reference_slots(np.array([[0.3, 0.2]], np.float32), unit([1.0, 0.0]), k=2).tolist() == [2]
    padded = np.array([[0.9, -np.inf], [0.9, -np.inf]], np.float32)  # an index of one reference
    assert batch_neighbours.reference_slots(padded, unit([1.0, 0.0], [0.0, 1.0]), k=2).tolist() == [1, 1]
    with pytest.raises(ValueError, match="query vectors"):
        batch_neighbours.reference_slots(padded, unit([1.0, 0.0]), k=2)


def test_the_annoy_path_gives_the_exact_slots_on_separated_clusters():
    rng = np.random.default_rng(1)
    centres = unit(*rng.normal(size=(30, 16)))
    vectors = unit(*(np.repeat(centres, 4, axis=0) + 0.01 * rng.normal(size=(120, 16))))
    ref_sims = np.full((120, 5), 0.9, np.float32)
    exact = batch_neighbours.reference_slots(ref_sims, vectors, 5)
    annoy = batch_neighbours.reference_slots(ref_sims, vectors, 5, neighbours.NeighbourSettings(exact_below=10))
    assert exact.tolist() == annoy.tolist() == [2] * 120  # 3 siblings above 0.9, other clusters below


def index_of(landmark_ids, penalties=None):
    extras = {} if penalties is None else {confidence.PENALTIES: np.asarray(penalties, np.float32)}
    return types.SimpleNamespace(landmark_ids=np.asarray(landmark_ids), extras=extras)


def test_the_vote_ranks_a_place_with_unlabelled_look_alikes_below_a_known_landmark():
    # references 0-2: landmark 7; 3-5: landmark 9. q7 and q7b: photos of landmark 7, each nearest its references;
    # d1, d2: two photos of a place not in the index, near each other, nearer landmark 9 than q7 is to 7
    index = index_of([7, 7, 7, 9, 9, 9])
    items = np.array([[0, 1, 2], [1, 0, 2], [3, 4, 5], [4, 3, 5]])
    sims = np.array([[0.8, 0.78, 0.7], [0.81, 0.79, 0.7], [0.85, 0.84, 0.83], [0.86, 0.85, 0.84]], np.float32)
    vectors = unit([1.0, 0.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.05])
    ids = ["q7", "q7b", "d1", "d2"]
    solution = {"q7": frozenset({7}), "q7b": frozenset({7}), "d1": frozenset(), "d2": frozenset()}
    settings = scoring.Scoring(k=3, batch_neighbours=True)
    plain = scoring.votes(index, items, sims, settings)
    slots = scoring.batch_slots(index, items, sims, vectors, settings)
    assert slots.tolist() == [3, 3, 2, 2]  # q7 and q7b are 0.45 apart; d1 and d2 0.999, nearer than a reference
    batch = scoring.votes(index, items, sims, settings, slots=slots)
    assert [v[0] for v in batch] == [v[0] for v in plain] == [7, 7, 9, 9]
    assert batch[:2] == plain[:2] and batch[2][1] == pytest.approx((0.85 + 0.84) / 3)
    assert gap(dict(zip(ids, plain)), solution) == pytest.approx((1 / 3 + 2 / 4) / 2)  # both distractors first
    assert gap(dict(zip(ids, batch)), solution) == 1.0


def test_penalised_similarities_are_compared_before_the_penalty():
    index = index_of([7, 9], penalties=[0.5, 0.0])
    items = np.array([[0, 1], [0, 1]])
    vectors = unit([1.0, 0.0], [1.0, 0.02])  # the two queries: cosine 0.9998
    raw = np.array([[0.99995, 0.1], [0.99995, 0.1]], np.float32)
    settings = scoring.Scoring(k=2, batch_neighbours=True)
    penalised = confidence.penalise(items, raw, index.extras[confidence.PENALTIES], settings.penalty_weight)
    assert scoring.batch_slots(index, items, penalised, vectors, settings).tolist() == [1, 1]


def test_a_verified_landmark_keeps_competing_and_a_query_left_without_votes_still_answers():
    index = index_of([7, 9, 9])
    items = np.array([[1, 2, 0], [0, 1, 2]])
    sims = np.array([[0.6, 0.55, 0.5], [0.4, 0.3, 0.2]], np.float32)
    settings = scoring.Scoring(k=3, verify_k=3, verify_weight=2.0, verify_cap=40)
    inliers = np.array([[0, 0, 40], [0, 0, 0]], np.int32)  # query 0's third neighbour (landmark 7) verifies fully
    slots = np.array([1, 0])  # query 0 keeps one vote (landmark 9), query 1 none
    got = scoring.votes(index, items, sims, settings, inliers, slots)
    assert got[0] == (7, pytest.approx(2.0 / 3.0))  # 7's vote went to other queries, its verification did not
    assert got[1] == (7, 0.0)  # the nearest reference's landmark, at no confidence
    assert scoring.votes(index, items, sims, settings, None, slots)[1] == (7, 0.0)


def test_mask_beyond_keeps_each_rows_first_slots():
    got = batch_neighbours.mask_beyond(np.array([[1, 2, 3], [4, 5, 6]]), np.array([2, 0]))
    assert got.tolist() == [[1, 2, -1], [-1, -1, -1]]
