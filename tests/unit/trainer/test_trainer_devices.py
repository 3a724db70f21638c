"""Which devices a run trains on (trainer/run/distribute.py), checked on this CPU-only machine: `--gpus`
means GPUs or a one-line error, CPU replicas only when asked, and the run says what it used."""

from __future__ import annotations

import json

import pytest

from tests.unit.trainer.trainer_helpers import run_train
from trainer import config
from trainer.run import distribute
from trainer.run.distribute import Devices

H200 = Devices("GPU", ("/gpu:0", "/gpu:1"), ("NVIDIA H200", "NVIDIA H200"), (9, 0), True)
T4_AND_P100 = Devices("GPU", ("/gpu:0", "/gpu:1"), ("Tesla T4", "Tesla P100"), (6, 0), True)
CPU = Devices("CPU", ("/cpu:0",), cuda_build=False, why_cpu="a CPU-only TensorFlow is installed: `make venv TF=gpu`")


@pytest.mark.parametrize("asked, seen, cuda, fix", [
    (4, 0, False, "a CPU-only TensorFlow is installed: `make venv TF=gpu`"),
    (2, 0, True, "this TensorFlow has CUDA but finds no usable GPU: check `nvidia-smi`"),
    (4, 2, True, "use --gpus=2 or leave --gpus unset"),
])
def test_fewer_gpus_than_asked_is_one_line_naming_cause_and_fix(asked, seen, cuda, fix):
    with pytest.raises(distribute.DeviceError) as err:
        distribute.gpus_needed(asked, seen, cuda)
    message = str(err.value)
    assert message.startswith(f"--gpus={asked}, but TensorFlow sees {seen} GPU(s) (") and fix in message
    assert "\n" not in message


def test_enough_gpus_or_none_asked_pass():
    distribute.gpus_needed(0, 0, False)
    distribute.gpus_needed(2, 4, True)


@pytest.mark.parametrize("setting, devices, expected", [
    ("auto", H200, True), ("auto", T4_AND_P100, False), ("auto", CPU, False),
    ("on", CPU, True), ("off", H200, False),
])
def test_mixed_precision_auto_is_on_for_compute_capability_7_and_up(setting, devices, expected):
    assert distribute.use_mixed_precision(setting, devices) is expected


@pytest.mark.parametrize("setting, devices, expected", [
    ("auto", H200, True), ("auto", CPU, False), ("on", CPU, True), ("off", H200, False)])
def test_jit_auto_is_on_for_gpus(setting, devices, expected):
    assert distribute.use_jit(setting, devices) is expected


def test_resolve_records_replicas_precision_and_xla_in_the_config():
    cfg = config.Config(data_dir="d", output_dir="o", batch_p=8)
    resolved = distribute.resolve(cfg, H200)
    assert (resolved.replicas, resolved.mixed_precision, resolved.jit_compile) == (2, "on", "on")
    assert resolved.replica_p == 4
    assert distribute.resolve(cfg, CPU).mixed_precision == "off"
    with pytest.raises(config.ConfigError, match="P must split evenly over replicas=2"):
        distribute.resolve(config.Config(data_dir="d", output_dir="o", batch_p=5), H200)


def test_describe_and_log_line_say_what_ran():
    d = H200.describe(True, True)
    assert d == {"kind": "GPU", "count": 2, "names": ["/gpu:0", "/gpu:1"], "models": ["NVIDIA H200"] * 2,
                 "compute_capability": "9.0", "cuda_build": True, "dtype_policy": "mixed_float16", "jit_compile": True}
    line = H200.log_line(True, True)
    assert line.startswith("devices: 2 GPU(s): /gpu:0 NVIDIA H200, /gpu:1 NVIDIA H200 (compute capability 9.0)")
    assert "with CUDA" in line and "dtype policy mixed_float16" in line and "XLA on" in line
    line = CPU.log_line(False, False)
    assert "devices: the CPU (1 replica(s): /cpu:0); no GPU used: a CPU-only TensorFlow" in line
    assert "without CUDA" in line and "dtype policy float32" in line and "XLA off" in line


def test_gpus_and_cpu_replicas_together_are_refused():
    with pytest.raises(config.ConfigError, match="give one"):
        config.Config(data_dir="d", output_dir="o", gpus=2, cpu_replicas=2)


def test_train_with_gpus_on_a_cpu_machine_fails_in_one_line_and_writes_nothing(tmp_path, small_shards):
    out = tmp_path / "out"
    done = run_train(small_shards, out, "--gpus=2", check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout
    errors = [line for line in done.stdout.splitlines() if "error" in line.lower()]
    assert errors == ["trainer: error: --gpus=2, but TensorFlow sees 0 GPU(s) (a CPU-only TensorFlow is installed: "
                      "`make venv TF=gpu`)"], done.stdout
    assert not out.exists() or not any(out.iterdir())


def test_train_without_gpus_flag_uses_the_cpu_and_says_so(tmp_path, small_shards):
    out = tmp_path / "out"
    done = run_train(small_shards, out, "--epochs=1", "--steps_per_epoch=1", "--jit_compile=on")
    assert "devices: the CPU (1 replica(s): /cpu:0); no GPU used: a CPU-only TensorFlow is installed" in done.stdout
    assert "XLA on" in done.stdout and "cannot be XLA-compiled" not in done.stdout
    rows = json.loads((out / "history.json").read_text())
    assert rows[-1]["devices"]["kind"] == "CPU" and rows[-1]["devices"]["jit_compile"] is True
    assert json.loads((out / "config.json").read_text())["replicas"] == 1


def test_a_step_xla_cannot_compile_falls_back_with_a_log_line(capsys):
    import keras
    import tensorflow as tf

    from trainer.run import loop

    # margin 5 > any distance between unit vectors: the loss and its gradient cannot be zero, so
    # the step must move the weights whatever the initialisation the earlier tests left behind
    cfg = config.Config(data_dir="d", output_dir="o", preset="tiny", batch_p=2, batch_k=2, loss="batch_hard",
                        jit_compile="on", margin=5.0)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)

    def uncompilable(x):  # a Python function inside the graph: XLA refuses it
        return x + 0.0 * tf.reshape(tf.py_function(lambda: 1.0, [], tf.float32), [])

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Lambda(uncompilable),
                              keras.layers.UnitNormalization()])
    optimizer = keras.optimizers.Adam(1e-2)
    batches = tf.data.Dataset.from_tensors((tf.random.stateless_normal((4, 3), (1, 2)),
                                            tf.constant([0, 0, 1, 1], tf.int64))).repeat()
    iterator = iter(batches)
    step = loop.FirstStepFallback(strategy, model, optimizer, cfg, None, chief=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = float(step(iterator))
    assert step.jit is False and loss > 0
    assert "--jit_compile: the train step cannot be XLA-compiled" in capsys.readouterr().out
    assert any((a != w.numpy()).any() for a, w in zip(before, model.trainable_weights))
    float(step(iterator))  # later steps run without XLA
