"""A real CLI run prints no TensorFlow C++ start-up line and no absl prefix, and shows progress."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from pipelines.cli.console import STARTUP_NOTICES

ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]", re.M)


def test_index_build_output_is_quiet_and_shows_progress(tiny_export, reference_shards, tmp_path, repo_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    run = subprocess.run([sys.executable, "-m", "indexer.build", f"--model={tiny_export}",
                          f"--data_dir={reference_shards}", f"--output_dir={tmp_path / 'idx'}", "--n_trees=2"],
                         cwd=repo_root, env=env, capture_output=True, text=True, check=True)
    output = run.stdout + run.stderr
    assert not [n for n in STARTUP_NOTICES if n in output], output
    assert "oneDNN" not in output and "absl::InitializeLog" not in output, output
    assert not ABSL_PREFIX.search(output), output
    assert re.search(r"references embedded: 48img \[[0-9:]+, [0-9.]+img/s\]", output), output
    assert "index of 48 items" in output
