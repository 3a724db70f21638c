"""Helpers for the trainer tests: generated shards (written by a TF-free subprocess) and CLI runs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import List

from tests.tools.make_shards import run as make_shards  # noqa: F401 - re-exported for the trainer tests

REPO = pathlib.Path(__file__).resolve().parents[3]


def train_command(data_dir: pathlib.Path, output_dir: pathlib.Path, *args: str) -> List[str]:
    return [sys.executable, "-m", "trainer.train", f"--data_dir={data_dir}", f"--output_dir={output_dir}",
            "--preset=tiny", *args]


def run_train(data_dir: pathlib.Path, output_dir: pathlib.Path, *args: str,
              check: bool = True) -> subprocess.CompletedProcess:
    """One `python -m trainer.train` run; its stdout+stderr in `.stdout`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(train_command(data_dir, output_dir, *args), cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"trainer failed ({done.returncode}):\n{done.stdout[-4000:]}")
    return done
