"""indexer/ranking/neighbours.py: the exact and Annoy paths on hand-placed vectors, their agreement on
clustered data, and what they hold in memory."""

from __future__ import annotations

import os

import numpy as np
import pytest

from indexer.ranking import confidence, neighbours, rerank

EXACT = neighbours.NeighbourSettings(exact_below=10**9)
ANNOY = neighbours.NeighbourSettings(exact_below=0)


def at(*degrees: float) -> np.ndarray:
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


def collect(vectors, k, labels=None, settings=EXACT):
    chunks = list(neighbours.top_k(vectors, k, labels, settings))
    return chunks, np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])


@pytest.mark.parametrize("settings", [EXACT, ANNOY], ids=["exact", "annoy"])
def test_hand_placed_neighbours_in_order_with_exact_cosines(settings):
    # 0, 10, 30, 100 degrees: 0's nearest others are 10 then 30; 100's are 30 then 10
    x = at(0.0, 10.0, 30.0, 100.0)
    _, items, sims = collect(x, 2, settings=settings)
    assert items.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    np.testing.assert_allclose(sims[0], np.cos(np.radians([10.0, 30.0])), atol=1e-6)
    np.testing.assert_allclose(sims[3], np.cos(np.radians([70.0, 90.0])), atol=1e-6)
    # labels: 0 and 1 are one landmark, so 0's nearest other-landmark rows are 30 and 100
    _, items, sims = collect(x, 2, np.array([5, 5, 6, 7]), settings)
    assert items.tolist() == [[2, 3], [2, 3], [1, 0], [2, 1]]
    np.testing.assert_allclose(sims[0], np.cos(np.radians([30.0, 100.0])), atol=1e-6)


def clustered(n: int, dim: int, per: int, seed: int = 0):
    """`per` vectors per label; labels in groups of 5 that look alike (as landmarks of one style do)."""
    rng = np.random.default_rng(seed)
    groups = rng.standard_normal((n // per // 5 + 1, dim)).astype(np.float32) * 3
    centres = groups[np.arange(n // per) // 5] + rng.standard_normal((n // per, dim)).astype(np.float32) * 2
    labels = np.arange(n) % (n // per)
    x = centres[labels] + rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def same_sets(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.sort(a, axis=1) == np.sort(b, axis=1)).all(axis=1).mean())


def test_annoy_path_agrees_with_exact_on_clustered_data():
    x, labels = clustered(1500, 16, 6)
    for k, lab in ((4, None), (3, labels)):
        _, exact_items, exact_sims = collect(x, k, lab, EXACT)
        _, annoy_items, annoy_sims = collect(x, k, lab, ANNOY)
        assert same_sets(exact_items, annoy_items) >= 0.95
        agree = (np.sort(exact_items, axis=1) == np.sort(annoy_items, axis=1)).all(axis=1)
        np.testing.assert_allclose(annoy_sims[agree], exact_sims[agree], atol=1e-5)  # same sets: same cosines
    # the library's two users, through their own settings
    penalty = {name: confidence.other_landmark_penalties(x, labels, 3, search=s) for name, s in
               (("exact", EXACT), ("annoy", ANNOY))}
    assert np.mean(np.abs(penalty["annoy"] - penalty["exact"]) <= 1e-5) >= 0.95
    dba = {name: rerank.database_augmentation(x, 4, 3.0, search=s) for name, s in (("exact", EXACT), ("annoy", ANNOY))}
    assert np.mean(np.einsum("nd,nd->n", dba["annoy"], dba["exact"]) >= 0.9999) >= 0.95


def test_big_landmarks_are_answered_from_indexes_without_their_own_rows(monkeypatch):
    # landmarks 0 and 1 hold 40 rows each (arcs at 0-39 and 100-139 degrees), more than max_candidates
    # allows; landmarks 2-5 one row each at 50, 60, 200 and 300 degrees. The big landmarks' rows find
    # their other-landmark neighbours through the big-label indexes, none by a scan of all rows
    degrees = np.r_[np.arange(40.0), 100 + np.arange(40.0), [50.0, 60.0, 200.0, 300.0]]
    labels = np.r_[np.zeros(40), np.ones(40), [2, 3, 4, 5]].astype(np.int64)
    x = at(*degrees)
    _, want, want_sims = collect(x, 2, labels, EXACT)
    assert want[0].tolist() == [80, 81] and want[40].tolist() == [81, 80] and want[79].tolist() == [82, 81]
    monkeypatch.setattr(neighbours, "exact_rows", lambda *a: pytest.fail("a row was answered by a full scan"))
    settings = neighbours.NeighbourSettings(exact_below=0, n_trees=4, max_candidates=30)
    _, items, sims = collect(x, 2, labels, settings)
    assert items.tolist() == want.tolist()
    np.testing.assert_allclose(sims, want_sims, atol=1e-6)
    # big against big: landmark 1 moved next to landmark 0 (40-79 degrees), every other landmark far off
    degrees[40:80] = 40 + np.arange(40.0)
    x = at(*degrees)
    monkeypatch.undo()
    _, want, _ = collect(x, 2, labels, EXACT)
    assert want[39].tolist() == [40, 41] and want[40].tolist() == [39, 38]
    monkeypatch.setattr(neighbours, "exact_rows", lambda *a: pytest.fail("a row was answered by a full scan"))
    assert collect(x, 2, labels, settings)[1][:80].tolist() == want[:80].tolist()  # the big landmarks' rows


def test_big_landmarks_on_clustered_data_agree_with_exact():
    # landmark 0 holds 40 of 60 rows: more than max_candidates allows
    x, _ = clustered(60, 8, 6, seed=1)
    labels = np.where(np.arange(60) < 40, 0, 1 + np.arange(60) % 3)
    settings = neighbours.NeighbourSettings(exact_below=0, n_trees=4, max_candidates=30, chunk=16)  # 40 big rows: 3 chunks
    _, items, _ = collect(x, 3, labels, settings)
    _, want, _ = collect(x, 3, labels, EXACT)
    assert (np.sort(items, axis=1) == np.sort(want, axis=1)).all()
    assert (labels[items] != labels[:, None]).all()


def test_memory_is_bounded_by_the_chunk(monkeypatch, tmp_path):
    x, labels = clustered(900, 8, 6)
    # exact: at most _BLOCK_FLOATS similarities per block, so at most 1000 // 900 = 1 row per chunk here
    monkeypatch.setattr(neighbours, "_BLOCK_FLOATS", 1000)
    chunks, _, _ = collect(x, 2, labels, EXACT)
    assert {len(c[1]) for c in chunks} == {1}
    # Annoy: chunks of `chunk` rows; the index and the first pass's N x k item numbers (int32) are
    # files under scratch_dir (not the heap) while the chunks are read, gone after
    settings = neighbours.NeighbourSettings(exact_below=0, n_trees=4, chunk=256, scratch_dir=str(tmp_path))
    stream = neighbours.top_k(x, 2, labels, settings)
    first = next(stream)
    assert first[0] == 0 and first[1].shape == (256, 2)
    files = {f: os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(tmp_path) for f in names}
    assert set(files) == {"neighbours.ann", "first.npy"} and files["neighbours.ann"] > x.nbytes
    assert np.load(next(os.path.join(d, "first.npy") for d, _, n in os.walk(tmp_path) if n)).shape == (900, 4)
    rest = list(stream)
    assert [c[0] for c in rest] == [256, 512, 768] and len(rest[-1][1]) == 900 - 768
    assert not os.listdir(tmp_path)
