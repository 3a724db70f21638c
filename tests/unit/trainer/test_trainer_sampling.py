"""P x K batches on a long tail: the planner alone, then the whole tf.data training input."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tests.unit.trainer.trainer_helpers import make_shards
from trainer import sampling
from trainer.config import Config

# 3 landmarks with many images, most with fewer than K, 6 with a single one.
LONG_TAIL = [14, 9, 5, 3, 2, 2, 1, 1, 1, 1, 1, 1]


def _labels() -> np.ndarray:
    labels = [c for c, n in enumerate(LONG_TAIL) for _ in range(n)]
    return np.array(labels + [-1, -1])  # two records without a landmark


def _check_batches(labels: np.ndarray, p: int, k: int) -> None:
    assert labels.size % (p * k) == 0 and labels.size > 0
    for batch in labels.reshape(-1, p * k):
        counts = collections.Counter(batch.tolist())
        assert len(counts) == p and set(counts.values()) == {k}, counts
        for g in range(p):  # whole groups, consecutive
            assert len(set(batch[g * k : (g + 1) * k].tolist())) == 1


def test_plan_batches_are_p_by_k_on_a_long_tail():
    labels = _labels()
    rng = np.random.default_rng(0)
    seen = collections.Counter()
    for _ in range(30):
        idx = sampling.plan_batches(labels, 4, 3, rng)
        _check_batches(labels[idx], 4, 3)
        assert -1 not in labels[idx]
        seen.update(set(labels[idx].tolist()))
    # every landmark, singletons included, shows up
    assert set(seen) == set(range(len(LONG_TAIL)))


def test_plan_batches_uses_a_landmarks_distinct_images_before_repeating():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 3)
    idx = sampling.plan_batches(labels, 2, 3, np.random.default_rng(3))
    for batch in idx.reshape(-1, 6):
        for g in range(2):
            assert len(set(batch[g * 3 : (g + 1) * 3].tolist())) == 3  # n >= K: no duplicates in a group


def test_plan_batches_rejects_a_window_with_too_few_landmarks():
    with pytest.raises(ValueError, match="fewer than the P=4"):
        sampling.plan_batches(np.array([0, 0, 1, 1, 2, 2]), 4, 2, np.random.default_rng(0))


def test_training_input_yields_p_by_k_replica_batches(tmp_path):
    import tensorflow as tf

    from trainer import data

    shards = make_shards(tmp_path / "data", f"--classes={len(LONG_TAIL)}",
                         f"--per_class={','.join(map(str, LONG_TAIL))}", "--size=48", "--shards=3")
    # 2 replicas of a global 6 x 2 batch: each replica's batch is 3 whole landmarks x 2 images
    cfg = Config(data_dir=str(shards), output_dir=str(tmp_path / "out"), preset="tiny", gpus=2, batch_p=6,
                 batch_k=2, image_size=40, sampling_window=20, shuffle_buffer=50, backbone="mobilenet", alpha=0.25)
    seen = collections.Counter()
    for images, labels in data.train_dataset(cfg).take(25):
        assert images.shape == (6, 40, 40, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
        _check_batches(labels.numpy(), 3, 2)
        seen.update(labels.numpy().tolist())
    assert set(seen) == set(range(len(LONG_TAIL)))
