"""Alpha-query expansion and database-side augmentation on hand-placed unit vectors (angles on a
circle), with orders worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.ranking import rerank


def at(*degrees: float) -> np.ndarray:
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


def exact_order(query: np.ndarray, refs: np.ndarray) -> list:
    return np.argsort(-(refs @ query), kind="stable").tolist()


def angle(v: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(v[1], v[0])))


def test_expand_weights_neighbours_by_similarity_power_and_ignores_padding():
    q = at(0.0)
    nbrs = np.stack([at(90.0, 180.0)])  # [1, 2, 2]
    got = rerank.expand(q, nbrs, np.array([[0.5, -np.inf]]), alpha=2.0)
    want = np.array([1.0, 0.25]) / np.hypot(1.0, 0.25)  # q + 0.5^2 * (0, 1); padding ignored
    np.testing.assert_allclose(got[0], want, atol=1e-6)


def test_alpha_query_expansion_brings_the_second_view_of_the_first_match_ahead():
    # references: A1 at 20 deg, A2 at 45 deg (same landmark, beyond A1), B at -40 deg
    refs = at(20.0, 45.0, -40.0)
    q = at(0.0)[0]
    assert exact_order(q, refs) == [0, 2, 1]  # A1 (20 deg away), B (40), A2 (45)
    sims = (refs @ q)[None, [0]]
    expanded = rerank.alpha_query_expansion(q[None], refs[None, [0]], sims, k=1, alpha=0.0)
    assert angle(expanded[0]) == pytest.approx(10.0, abs=1e-4)  # halfway to A1 with weight 1
    assert exact_order(expanded[0], refs) == [0, 1, 2]  # A1 (10), A2 (35), B (50)
    np.testing.assert_allclose(rerank.alpha_query_expansion(q[None], refs[None], sims, k=0, alpha=3.0), q[None])


def test_database_augmentation_pulls_each_reference_towards_its_nearest():
    # A1 at 0 deg, A2 at 25 deg, B at 70 deg; with k=2 and alpha=0 each becomes the mean direction of
    # itself and its nearest other: A1, A2 -> 12.5 deg; B (nearest A2, 45 deg away) -> 47.5 deg
    refs = at(0.0, 25.0, 70.0)
    out = rerank.database_augmentation(refs, k=2, alpha=0.0, chunk=2)
    assert [angle(v) for v in out] == pytest.approx([12.5, 12.5, 47.5], abs=1e-4)
    q = at(40.0)[0]
    assert exact_order(q, refs) == [1, 2, 0]  # A2 (15 away), B (30), A1 (40)
    assert exact_order(q, out)[0] == 2  # B (7.5 away) now ahead of both A views (27.5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(rerank.database_augmentation(refs, k=1, alpha=3.0), refs, atol=1e-6)


def test_database_augmentation_alpha_favours_close_neighbours():
    refs = at(0.0, 10.0, 80.0)
    flat = rerank.database_augmentation(refs, k=3, alpha=0.0)
    sharp = rerank.database_augmentation(refs, k=3, alpha=8.0)
    # with a high alpha the far reference (80 deg) barely moves A1 towards it
    assert angle(sharp[0]) < angle(flat[0])
