"""Class-balanced P x K batches: the pool planner alone, then the whole tf.data training input."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from tests.unit.trainer.trainer_helpers import make_shards
from trainer.input import sampling
from trainer.config import Config

# 3 landmarks with many images, most with fewer than K, 6 with a single one.
LONG_TAIL = [14, 9, 5, 3, 2, 2, 1, 1, 1, 1, 1, 1]


def _labels() -> np.ndarray:
    labels = [c for c, n in enumerate(LONG_TAIL) for _ in range(n)]
    return np.array(labels + [-1, -1])  # two records without a landmark


def _check_batches(labels: np.ndarray, p: int, k: int) -> None:
    """Whole batches of P distinct landmarks, each a run of K consecutive records."""
    assert labels.size % (p * k) == 0 and labels.size > 0
    for batch in labels.reshape(-1, p * k):
        groups = batch.reshape(p, k)
        assert all(len(set(g.tolist())) == 1 for g in groups), groups
        assert len(set(groups[:, 0].tolist())) == p, groups


@pytest.mark.parametrize("policy", sampling.POLICIES)
def test_pool_batches_hold_k_distinct_photos_whenever_the_landmark_has_k(policy):
    labels = _labels()
    planner = sampling.PoolPlanner(4, 3, policy, seed=0)
    seen = collections.Counter()
    for _ in range(40):
        idx = planner.plan(labels)
        _check_batches(labels[idx.reshape(-1)], 4, 3)
        for group in idx.reshape(-1, 3):
            label = int(labels[group[0]])
            assert label >= 0
            distinct = len(set(group.tolist()))
            assert distinct == min(3, LONG_TAIL[label]), (label, group)  # repeats only below K
        seen.update(labels[idx.reshape(-1)].tolist())
    if policy != "proportional":  # every landmark, singletons included, shows up
        assert set(seen) == set(range(len(LONG_TAIL)))


def test_successive_groups_use_every_photo_before_repeating():
    rng = np.random.default_rng(1)
    groups = sampling.k_groups(np.arange(10, 20), 5, 4, rng)  # 20 picks of 10 photos
    assert all(len(set(g)) == 4 for g in groups.tolist())
    assert collections.Counter(groups.reshape(-1).tolist()) == {i: 2 for i in range(10, 20)}


def test_policy_sets_how_often_a_landmark_is_drawn():
    sizes = [64] * 4 + [4] * 60  # 4 large landmarks, 60 small ones
    labels = np.repeat(np.arange(len(sizes)), sizes)
    share = {}
    for policy in sampling.POLICIES:
        planner = sampling.PoolPlanner(8, 4, policy, seed=2)
        groups = collections.Counter()
        for _ in range(30):
            idx = planner.plan(labels)
            groups.update(labels[idx.reshape(-1, 4)[:, 0]].tolist())
        large = sum(groups[i] for i in range(4)) / 4
        small = sum(groups[i] for i in range(4, len(sizes))) / 60
        share[policy] = large / small  # groups per large landmark / per small one
    # Expected ratios 1, sqrt(16) = 4, 16 (proportional is capped: a landmark can hold at most one
    # group per batch of a pool, so it lands below 16).
    assert 0.8 < share["uniform"] < 1.25, share
    assert 3.2 < share["sqrt"] < 5.0, share
    assert share["proportional"] > 6.0, share


def test_a_landmark_cut_over_pools_is_weighted_as_one():
    planner = sampling.PoolPlanner(2, 4, "uniform", seed=0, totals={1: 100, 2: 10, 3: 10}, split_records=120)
    # Uniform: 120 / 4 = 30 groups per epoch over 3 landmarks = 10 each; a pool holding half of
    # landmark 1 owes it half of its 10.
    expected = planner.expected_groups(np.array([1, 2]), np.array([50, 10]))
    np.testing.assert_allclose(expected, [5.0, 10.0])


def test_a_pool_with_fewer_than_p_landmarks_yields_no_batch():
    planner = sampling.PoolPlanner(4, 2, "sqrt", seed=0)
    assert planner.plan(np.array([0, 0, 1, 1, 2, 2])).shape == (0, 8)
    with pytest.raises(ValueError, match="expected one of"):
        sampling.PoolPlanner(4, 2, "square", seed=0)


def _train_batches(tmp_path, *shard_args: str, gpus: int = 2, batches: int = 25):
    import tensorflow as tf

    from trainer.input import data

    shards = make_shards(tmp_path / "data", f"--classes={len(LONG_TAIL)}",
                         f"--per_class={','.join(map(str, LONG_TAIL))}", "--size=48", *shard_args)
    # 2 replicas of a global 6 x 2 batch: each replica's batch is 3 whole landmarks x 2 images
    cfg = Config(data_dir=str(shards), output_dir=str(tmp_path / "out"), preset="tiny", replicas=gpus, batch_p=6,
                 batch_k=2, image_size=40, pool_shards=2, backbone="mobilenet", alpha=0.25)
    out = []
    for crops, labels, sizes, params in data.train_dataset(cfg).take(batches):
        # Uint8 crops of the stored 48-px images, padded; resize and jitter happen on the device.
        assert crops.dtype == tf.uint8 and crops.shape[0] == 6 // gpus * 2 and crops.shape[1] <= 48
        assert sizes.shape == (6 // gpus * 2, 2) and params.shape == (6 // gpus * 2, 4)
        images = data.training_images((crops, labels, sizes, params), 40)
        assert images.shape == (6 // gpus * 2, 40, 40, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
        out.append(labels.numpy())
    return shards, out


def test_training_input_yields_whole_groups_per_replica_from_whole_landmark_shards(tmp_path, caplog):
    shards, batches = _train_batches(tmp_path, "--shards=4")
    index = json.loads((shards / "shard_index.json").read_text())
    by_shard = [set(map(int, s["labels"])) for s in index["splits"]["train"]["shards"].values()]
    # 41 records in 4 shards of capacity 11: landmark 0 (14 photos) spans two, every other one sits in one
    assert sorted(i for i, s in enumerate(by_shard) if 0 in s) == [0, 1]
    assert sum(len(s) for s in by_shard) == len(LONG_TAIL) + 1
    seen = collections.Counter()
    for labels in batches:
        _check_batches(labels, 3, 2)
        seen.update(labels.tolist())
    assert set(seen) == set(range(len(LONG_TAIL)))
    assert "positives will be weak" not in caplog.text


def test_records_without_a_shard_index_still_train_with_a_warning(tmp_path, caplog):
    _, batches = _train_batches(tmp_path, "--shards=3", "--layout=hashed", gpus=1, batches=5)
    for labels in batches:
        _check_batches(labels, 6, 2)
    assert "positives will be weak" in caplog.text and "Re-run `make preprocess`" in caplog.text


def test_multi_worker_pipelines_read_their_own_whole_shards(tmp_path):
    import tensorflow as tf

    from trainer.input import data

    shards = make_shards(tmp_path / "data", f"--classes={len(LONG_TAIL)}",
                         f"--per_class={','.join(map(str, LONG_TAIL))}", "--size=32", "--shards=4")
    cfg = Config(data_dir=str(shards), output_dir=str(tmp_path / "out"), preset="tiny", replicas=1, batch_p=2,
                 batch_k=2, image_size=32, pool_shards=2, backbone="mobilenet", alpha=0.25)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        labels = set()
        for _, batch, _, _ in data.train_dataset(cfg, context).take(30):
            _check_batches(batch.numpy(), 2, 2)
            labels.update(batch.numpy().tolist())
        seen.append(labels)
    # Shards 0 and 2 vs 1 and 3: only landmark 0, which spans shards 0-1, may reach both pipelines.
    assert seen[0] & seen[1] <= {0} and len(seen[0]) >= 2 and len(seen[1]) >= 2
