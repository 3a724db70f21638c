"""Choosing the tf.distribute strategy from `--gpus` and `TF_CONFIG`.

- `TF_CONFIG` naming several tasks (chief/worker): `MultiWorkerMirroredStrategy`, each worker using
  its first `--gpus` GPUs (or its CPU). The trainer's own loop (loop.py) runs under it; Keras 3
  `fit` is not used because it is reported broken under this strategy (keras-team/keras#20585).
- Otherwise `MirroredStrategy` over `--gpus` GPUs, or, on a machine without a GPU, over that many
  logical CPU devices (how multi-replica training is tested without GPUs).

Devices must be configured before TensorFlow initialises its runtime: call `make_strategy` first.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List

import tensorflow as tf


def cluster_spec() -> Dict[str, List[str]]:
    """The `cluster` of `TF_CONFIG` (empty without one)."""
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})


def is_multi_worker() -> bool:
    spec = cluster_spec()
    return len(spec.get("chief", [])) + len(spec.get("worker", [])) > 1


def _use_gpus(count: int) -> List[str]:
    """Make only the first `count` GPUs visible; their device names, or [] without GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return []
    if count > len(gpus):
        raise ValueError(f"--gpus={count}, but this machine has {len(gpus)} GPU(s)")
    tf.config.set_visible_devices(gpus[:count], "GPU")
    for gpu in gpus[:count]:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [f"/gpu:{i}" for i in range(count)]


def _logical_cpus(count: int) -> List[str]:
    """Split the CPU into `count` logical devices (once per process, before TF initialises)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:  # already initialised: fine if it already has enough devices
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise RuntimeError(
                f"--gpus={count} on a CPU-only machine needs {count} logical CPU devices, but TensorFlow "
                "was initialised before the trainer could create them; start a fresh process"
            ) from err
    return [f"/cpu:{i}" for i in range(count)]


def make_strategy(gpus: int) -> tf.distribute.Strategy:
    """The strategy for this process (see the module docstring)."""
    if is_multi_worker():
        _use_gpus(gpus)
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = _use_gpus(gpus) or _logical_cpus(gpus)
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this task writes the shared outputs (checkpoints, logs, export)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not is_multi_worker():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = bool(cluster_spec().get("chief"))
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def task_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """`path` on the chief; a private scratch directory beside it on other workers.

    Under MultiWorkerMirroredStrategy every worker must take part in saving (the save is a
    collective), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        return path
    resolver = strategy.cluster_resolver
    return os.path.join(os.path.dirname(path.rstrip("/")), f".{resolver.task_type}-{resolver.task_id}",
                        os.path.basename(path.rstrip("/")))


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Block until every worker gets here (a tiny all-reduce); a no-op cost on one machine.

    Workers finishing early would otherwise exit while the chief still exports, and the chief's
    coordination service would report them as crashed.
    """
    @tf.function
    def all_reduce_one():
        return strategy.reduce("SUM", strategy.run(_one), axis=None)

    all_reduce_one()


def _one() -> tf.Tensor:
    return tf.constant(1.0)
