"""A training step that fails on a damaged shard: `loop.train` lets go of its input iterator before
the error leaves it.

The iterator's tf.data threads go on prefetching past the error and call the pool planner, a Python
function (trainer/input/pool_input.py). Held by the error's traceback frames, the iterator lived
until the interpreter shut down, where its destructor waited for a planner call that could never
take the GIL: `trainer.train` printed its one error line and then hung (seen once in a CI run of
tests/e2e/test_hostile_inputs.py). Here the iterator must be gone, without a garbage collection,
as soon as the error is caught, and with it every reference from the error's frames.
"""

from __future__ import annotations

import shutil
import weakref

import pytest

from trainer.run import loop


@pytest.fixture
def truncated(small_shards, tmp_path):
    """The train shards of `small_shards`, the first cut to 2/3, and no val shards (so the first
    error comes from a training step, not from the validation of epoch 0)."""
    data = tmp_path / "data"
    shutil.copytree(small_shards, data, ignore=shutil.ignore_patterns("val-*"))
    first = sorted(data.glob("train-*"))[0]
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size * 2 // 3)
    return data


def test_a_failed_step_releases_the_input_iterator_before_the_error_leaves_train(truncated, tmp_path,
                                                                                  monkeypatch):
    import tensorflow as tf

    from trainer import config
    from trainer.input import records_info
    from trainer.network import heads
    from trainer.run import distribute

    made = []

    def recorded(strategy, cfg):
        iterator = made_input(strategy, cfg)
        made.append(weakref.ref(iterator))
        return iterator

    made_input = loop.distributed_input
    monkeypatch.setattr(loop, "distributed_input", recorded)
    fields = {**config.PRESETS["tiny"], "epochs": 1, "steps_per_epoch": 2, "pool_shards": 2}
    cfg = config.Config(data_dir=str(truncated), output_dir=str(tmp_path / "out"), **fields)
    devices = distribute.select(cfg.gpus, cfg.cpu_replicas)
    cfg = heads.resolve_classes(records_info.resolve_image_size(distribute.resolve(cfg, devices)))
    with pytest.raises(tf.errors.DataLossError) as raised:
        loop.train(cfg, distribute.make_strategy(devices))
    assert "truncated record" in str(raised.value)
    assert len(made) == 1
    # No gc.collect(): a cycle would keep it until a later collection, possibly the one at exit.
    assert made[0]() is None, "the input iterator outlived the failed train(): its pipeline runs on"
