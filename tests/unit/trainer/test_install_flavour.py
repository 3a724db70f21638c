"""The TensorFlow a machine gets (Makefile, requirements.lock, requirements-gpu.lock): a GPU build where
`nvidia-smi -L` lists a GPU, tensorflow-cpu elsewhere, TF=gpu|cpu to override, and two locks in step."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from tools import gpu_lock

REPO = pathlib.Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _pins(name: str) -> dict:
    return {gpu_lock.canonical(n): v for n, v in gpu_lock.read_pins(str(REPO / name))}


def test_the_two_locks_pin_every_shared_package_alike_and_the_same_tensorflow():
    cpu, gpu = _pins("requirements.lock"), _pins("requirements-gpu.lock")
    assert "tensorflow-cpu" in cpu and "tensorflow" not in cpu
    assert "tensorflow-cpu" not in gpu and gpu["tensorflow"] == cpu["tensorflow-cpu"]
    assert {n: v for n, v in gpu.items() if n in cpu} == {n: v for n, v in cpu.items() if n in gpu}
    assert set(cpu) - set(gpu) == {"tensorflow-cpu"}
    extra = set(gpu) - set(cpu) - {"tensorflow"}
    assert extra and all(n.startswith("nvidia-") and n.endswith("-cu12") for n in extra)
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-nccl-cu12"} <= extra


def test_gpu_pins_keep_the_cpu_pins_and_refuse_to_move_one():
    cpu = [("numpy", "2.2.6"), ("tensorflow_cpu", "2.21.0")]
    resolved = {"numpy": "2.2.6", "tensorflow": "2.21.0", "nvidia-cudnn-cu12": "9.1"}
    assert gpu_lock.gpu_pins(cpu, resolved) == [("numpy", "2.2.6"), ("nvidia-cudnn-cu12", "9.1"),
                                               ("tensorflow", "2.21.0")]
    with pytest.raises(SystemExit, match="numpy 2.2.6 -> 2.3.0"):
        gpu_lock.gpu_pins(cpu, {**resolved, "numpy": "2.3.0"})


def _dry_run_venv(tmp_path, nvidia_smi: str, *args: str) -> str:
    """`make -n venv` for a fresh venv, with a fake `nvidia-smi` first on PATH printing `nvidia_smi`."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '%s' '{nvidia_smi}'\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("TF", "MAKEFLAGS", "MFLAGS")}
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["make", "-n", "venv", f"VENV={tmp_path / 'venv'}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_venv_installs_the_gpu_lock_where_nvidia_smi_lists_a_gpu(tmp_path):
    out = _dry_run_venv(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0)\\n")
    assert "-r requirements-gpu.lock" in out and "-r requirements.lock" not in out
    assert "the gpu TensorFlow from requirements-gpu.lock (nvidia-smi lists a GPU" in out
    assert "uninstall -q -y tensorflow-cpu" in out


def test_make_venv_installs_the_cpu_lock_without_a_gpu(tmp_path):
    out = _dry_run_venv(tmp_path, "")
    assert "-r requirements.lock" in out and "requirements-gpu.lock" not in out
    assert "the cpu TensorFlow from requirements.lock (nvidia-smi lists no GPU" in out


@pytest.mark.parametrize("listed, forced, lock", [
    ("GPU 0: NVIDIA H200 (UUID: GPU-0)\\n", "cpu", "requirements.lock"), ("", "gpu", "requirements-gpu.lock")])
def test_tf_variable_overrides_the_detection(tmp_path, listed, forced, lock):
    out = _dry_run_venv(tmp_path, listed, f"TF={forced}")
    assert f"-r {lock}" in out and f"(TF={forced} given" in out


def test_an_unknown_tf_flavour_is_one_line(tmp_path):
    done = subprocess.run(["make", "-n", "venv", "TF=rocm", f"VENV={tmp_path / 'v'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "TF=rocm: expected TF=gpu or TF=cpu" in done.stderr
