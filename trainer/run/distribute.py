"""The devices a run trains on, and the tf.distribute strategy over them.

- `--gpus=0` (the default): every GPU TensorFlow sees, or the CPU when it sees none.
- `--gpus=N`: exactly N GPUs; fewer visible is a one-line error naming the cause and the fix.
- `--cpu_replicas=N`: N replicas on logical CPU devices, GPUs hidden (how multi-replica training is
  tested without GPUs). Never chosen silently.
- `TF_CONFIG` naming several tasks (chief/worker): `MultiWorkerMirroredStrategy`, each worker on its
  GPUs as above (or its CPU). The trainer's own loop (loop.py) runs under it; Keras 3 `fit` is not
  used because it is reported broken under this strategy (keras-team/keras#20585).
- Otherwise `MirroredStrategy` over the chosen devices.

`Devices` says what ran (kind, names, CUDA build, dtype policy, XLA); the trainer logs it and keeps it
in history.json and the export's metadata. Devices must be configured before TensorFlow initialises
its runtime: call `select` first.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from trainer.config import Config, ConfigError

MIN_MIXED_PRECISION_CC = (7, 0)  # tensor cores: float16 pays from Volta on


class DeviceError(ConfigError):
    """The devices asked for are not there (a one-line error: cause and fix)."""


@dataclasses.dataclass(frozen=True)
class Devices:
    """The local devices one process trains on (one replica each)."""

    kind: str  # "GPU" or "CPU"
    names: Tuple[str, ...]  # logical device names, e.g. ("/gpu:0", "/gpu:1")
    models: Tuple[str, ...] = ()  # GPU product names, e.g. "NVIDIA H200"
    compute_capability: Optional[Tuple[int, int]] = None  # the lowest over the GPUs used
    cuda_build: bool = False  # whether this TensorFlow build has CUDA
    why_cpu: str = ""  # on the CPU: why no GPU was used

    @property
    def replicas(self) -> int:
        return len(self.names)

    def describe(self, mixed_precision: bool, jit: bool) -> Dict:
        """What history.json and export.json record about the devices of a run."""
        return {"kind": self.kind, "count": self.replicas, "names": list(self.names), "models": list(self.models),
                "compute_capability": ".".join(map(str, self.compute_capability)) if self.compute_capability else None,
                "cuda_build": self.cuda_build, "dtype_policy": "mixed_float16" if mixed_precision else "float32",
                "jit_compile": jit}

    def log_line(self, mixed_precision: bool, jit: bool) -> str:
        """One line for the start of a run: what trains where, and how."""
        d = self.describe(mixed_precision, jit)
        if self.kind == "GPU":
            where = f"{self.replicas} GPU(s): " + ", ".join(
                f"{n} {m}".strip() for n, m in zip(self.names, self.models or [""] * self.replicas))
            if self.compute_capability:
                where += f" (compute capability {d['compute_capability']})"
        else:
            where = f"the CPU ({self.replicas} replica(s): {', '.join(self.names)}); no GPU used: {self.why_cpu}"
        return (f"devices: {where}; TensorFlow {tf.__version__} {'with' if self.cuda_build else 'without'} CUDA; "
                f"dtype policy {d['dtype_policy']}; XLA {'on' if jit else 'off'}")


def cluster_spec() -> Dict[str, List[str]]:
    """The `cluster` of `TF_CONFIG` (empty without one)."""
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})


def is_multi_worker() -> bool:
    spec = cluster_spec()
    return len(spec.get("chief", [])) + len(spec.get("worker", [])) > 1


def no_gpu_reason(cuda_build: bool, seen: int) -> str:
    """Why TensorFlow sees `seen` GPUs, and what to do about it."""
    if not cuda_build:
        return "a CPU-only TensorFlow is installed: `make venv TF=gpu`"
    if seen == 0:
        return ("this TensorFlow has CUDA but finds no usable GPU: check `nvidia-smi`, the NVIDIA driver and "
                "CUDA_VISIBLE_DEVICES")
    return f"use --gpus={seen} or leave --gpus unset to train on every visible GPU"


def gpus_needed(asked: int, seen: int, cuda_build: bool) -> None:
    """Raise DeviceError when `--gpus=asked` cannot be met by the `seen` visible GPUs."""
    if asked > seen:
        raise DeviceError(f"--gpus={asked}, but TensorFlow sees {seen} GPU(s) ({no_gpu_reason(cuda_build, seen)})")


def _gpu_details(gpus: list) -> Tuple[Tuple[str, ...], Optional[Tuple[int, int]]]:
    models, capabilities = [], []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):
            details = {}
        models.append(str(details.get("device_name", "")))
        if details.get("compute_capability"):
            capabilities.append(tuple(details["compute_capability"]))
    return tuple(models), (min(capabilities) if capabilities else None)


def _logical_cpus(count: int) -> Tuple[str, ...]:
    """Split the CPU into `count` logical devices (once per process, before TF initialises)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as err:  # already initialised: fine if it already has enough devices
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise RuntimeError(
                f"--cpu_replicas={count} needs {count} logical CPU devices, but TensorFlow was initialised "
                "before the trainer could create them; start a fresh process"
            ) from err
    return tuple(f"/cpu:{i}" for i in range(count))


def select(gpus: int, cpu_replicas: int = 0) -> Devices:
    """Make the devices of `--gpus` / `--cpu_replicas` the visible ones (see the module docstring)."""
    cuda = tf.test.is_built_with_cuda()
    physical = tf.config.list_physical_devices("GPU")
    if cpu_replicas:
        if is_multi_worker() and cpu_replicas > 1:
            raise DeviceError(f"--cpu_replicas={cpu_replicas}: under TF_CONFIG each worker trains on one CPU "
                              "device (or its GPUs); leave --cpu_replicas unset")
        if physical:
            tf.config.set_visible_devices([], "GPU")
        return Devices("CPU", _logical_cpus(cpu_replicas), cuda_build=cuda,
                       why_cpu=f"--cpu_replicas={cpu_replicas} asked for the CPU")
    gpus_needed(gpus, len(physical), cuda)
    if not physical:
        return Devices("CPU", ("/cpu:0",), cuda_build=cuda, why_cpu=no_gpu_reason(cuda, 0))
    used = physical[:gpus or len(physical)]
    tf.config.set_visible_devices(used, "GPU")
    for gpu in used:
        tf.config.experimental.set_memory_growth(gpu, True)
    models, capability = _gpu_details(used)
    return Devices("GPU", tuple(f"/gpu:{i}" for i in range(len(used))), models, capability, cuda)


def use_mixed_precision(setting: str, devices: Devices) -> bool:
    """`--mixed_precision`: on, off, or auto = on for GPUs of compute capability 7.0 or more."""
    if setting != "auto":
        return setting == "on"
    return (devices.kind == "GPU" and devices.compute_capability is not None
            and devices.compute_capability >= MIN_MIXED_PRECISION_CC)


def use_jit(setting: str, devices: Devices) -> bool:
    """`--jit_compile`: on, off, or auto = on for GPUs (XLA fuses the step's kernels there)."""
    return setting == "on" if setting != "auto" else devices.kind == "GPU"


def resolve(cfg: Config, devices: Devices) -> Config:
    """`cfg` with the replica count, precision and XLA decided for these devices (saved in config.json)."""
    mixed, jit = use_mixed_precision(cfg.mixed_precision, devices), use_jit(cfg.jit_compile, devices)
    return dataclasses.replace(cfg, replicas=devices.replicas, mixed_precision="on" if mixed else "off",
                               jit_compile="on" if jit else "off")


def make_strategy(devices: Devices) -> tf.distribute.Strategy:
    """The strategy over `devices` (MultiWorkerMirroredStrategy under a multi-task TF_CONFIG)."""
    if is_multi_worker():
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(list(devices.names))


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
