"""Sharded Annoy indexes: same answers as one index, exact on hand-placed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.store.sharded import ShardedIndex, build_sharded, shard_bounds


def ring(n: int) -> np.ndarray:
    """n unit vectors on a circle in 3-D, item i at angle 2*pi*i/n: item i's neighbours are
    i, i+-1, i+-2, ... (cyclic), at exactly known cosines."""
    angles = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles), np.zeros(n)], axis=1).astype(np.float32)


def test_shard_bounds_cover_items_contiguously():
    assert shard_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_bounds(4, 1) == [(0, 4)]
    with pytest.raises(ValueError):
        shard_bounds(3, 4)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_ring_neighbours_are_exact(tmp_path, num_shards):
    vectors = ring(36)  # 10 degrees apart
    files = build_sharded(vectors, str(tmp_path), n_trees=5, num_shards=num_shards)
    index = ShardedIndex(str(tmp_path), files, dimension=3, n_trees=5)
    # A query at 21 degrees: nearest are items 2 (1 deg), 3 (9 deg), 1 (11 deg), 4 (19 deg).
    q = np.array([[np.cos(np.radians(21)), np.sin(np.radians(21)), 0]], dtype=np.float32)
    items, sims = index.query(q, k=4, search_k=1000)
    assert items.tolist() == [[2, 3, 1, 4]]
    np.testing.assert_allclose(sims[0], np.cos(np.radians([1, 9, 11, 19])), atol=1e-5)


def test_sharded_equals_unsharded(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    one = ShardedIndex(str(tmp_path), build_sharded(vectors, str(tmp_path), 10, 1), 8, 10)
    (tmp_path / "s").mkdir()
    many = ShardedIndex(str(tmp_path / "s"), build_sharded(vectors, str(tmp_path / "s"), 10, 4), 8, 10)
    # search_k above the item count makes every shard's search exhaustive, hence exact
    a_items, a_sims = one.query(queries, k=7, search_k=10_000)
    b_items, b_sims = many.query(queries, k=7, search_k=10_000)
    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_allclose(a_sims, b_sims, atol=1e-6)
    exact = np.argsort(-(queries / np.linalg.norm(queries, axis=1, keepdims=True))
                       @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T, axis=1)[:, :7]
    np.testing.assert_array_equal(a_items, exact)


def test_fewer_items_than_k_are_padded(tmp_path):
    index = ShardedIndex(str(tmp_path), build_sharded(ring(3), str(tmp_path), 2, 1), 3, 2)
    items, sims = index.query(ring(3)[:1], k=5)
    assert items[0, :3].tolist() == [0, 1, 2] and items[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(sims[0, 3:]).all()


def test_query_dimension_is_checked(tmp_path):
    index = ShardedIndex(str(tmp_path), build_sharded(ring(6), str(tmp_path), 2, 1), 3, 2)
    with pytest.raises(ValueError, match=r"\[Q, 3\]"):
        index.query(np.zeros((1, 4), np.float32), k=1)


def test_deterministic_build_writes_the_same_bytes_twice(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(5000, 16)).astype(np.float32)
    builds = []
    for run in range(2):
        directory = tmp_path / str(run)
        directory.mkdir()
        (record,) = build_sharded(vectors, str(directory), n_trees=8, num_shards=1, seed=3, deterministic=True)
        builds.append((directory / record.name).read_bytes())
    assert builds[0] == builds[1]
