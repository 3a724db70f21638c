"""`make gpu-check` (trainer/gpu_check.py) on this CPU-only machine: exit 2 with its reason, and its
measuring code run end to end on the CPU at a tiny size (where its replica check must fail)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tests.unit.trainer.trainer_helpers import REPO
from trainer import config, gpu_check


def test_without_a_gpu_it_says_so_and_exits_2():
    done = subprocess.run([sys.executable, "-m", "trainer.gpu_check"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == gpu_check.NO_GPU_EXIT, done.stderr
    assert "gpu-check: needs a GPU, but TensorFlow sees none (a CPU-only TensorFlow is installed: `make venv " \
           "TF=gpu`)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("names, bad", [
    (("/job:localhost/replica:0/task:0/device:GPU:0", "/job:localhost/replica:0/task:0/device:GPU:1"), ()),
    (("/job:localhost/replica:0/task:0/device:GPU:0", "/job:localhost/replica:0/task:0/device:CPU:0"),
     ("/job:localhost/replica:0/task:0/device:CPU:0",)),
    (("/cpu:0",), ("/cpu:0",)),
])
def test_off_gpu_names_every_replica_not_on_a_gpu(names, bad):
    assert gpu_check.off_gpu(names) == bad


def test_the_measurement_runs_on_generated_records_and_the_cpu_fails_the_replica_check(tmp_path):
    import tensorflow as tf

    from trainer.run import distribute

    data = gpu_check.write_records(str(tmp_path), classes=4, per_class=4, size=48, shards=2)
    cfg = config.Config(data_dir=data, output_dir=str(tmp_path), **{**config.PRESETS["tiny"], "image_size": 40,
                        "batch_p": 2, "batch_k": 2, "jit_compile": "off", "mixed_precision": "off"})
    assert gpu_check.input_rate(cfg, batches=3) > 0
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    run = gpu_check.train_rate(dataclasses.replace(cfg, replicas=1), strategy, steps=2, warmup=1)
    assert run["images_per_s"] > 0 and run["jit"] is False
    assert gpu_check.off_gpu(run["replica_devices"]) == run["replica_devices"] != ()
    assert distribute.is_chief(strategy)
