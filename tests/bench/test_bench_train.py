"""`make bench-train` keeps working: its smoke mode runs every measurement at toy sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.unit.trainer.trainer_helpers import REPO


def test_bench_train_smoke_prints_both_host_paths_and_the_device_cost():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "bench.bench_train", "--smoke"], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    out = done.stdout
    assert re.search(r"64 px\s+train\s+[\d.]+ img/s\s+input\s+[\d.]+ img/s", out), out
    for size in (224, 299):
        # old and new images per CPU-second, their ratio, cores per GPU for each, the new path's wall rate
        row = re.search(rf"^\s*{size}\s+341x256\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                        out, re.M)
        assert row, out
        old, new, ratio = (float(row.group(i)) for i in (1, 2, 3))
        assert old > 0 and new > 0 and abs(ratio - new / old) < 0.01
        assert re.search(rf"on-device augmentation, timed on this CPU \(not a GPU\): {size} px [\d.]+ ms per image",
                         out), out
