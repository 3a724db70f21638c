"""Running a benchmark's `--smoke` mode as a user would, and reading the figures it prints."""

from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Optional

from bench.smoke import BANNER

REPO = pathlib.Path(__file__).resolve().parents[2]
# A minus sign counts only where it cannot be a range's dash ("199-200"); commas only as thousands.
_NUMBER = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?")


def run_smoke(module: str, *args: str, tmpdir: Optional[pathlib.Path] = None, timeout: float = 300) -> str:
    """What `python -m bench.<module> --smoke <args>` prints (with TMPDIR=`tmpdir` when given),
    after checking that it exited 0 and said on its first line that it ran in smoke mode."""
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", "--smoke", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, (f"bench.{module} --smoke exited {proc.returncode}\n--- stdout:\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr:\n{proc.stderr[-3000:]}")
    assert proc.stdout.splitlines()[0] == BANNER, proc.stdout[:500]
    return proc.stdout


def numbers(text: str) -> List[float]:
    """Every number in `text` ("1,234.5" -> 1234.5, "2.0x" -> 2.0, "3.1e-05" -> 3.1e-05)."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def number(text: str) -> float:
    """The first number in `text`; fails when there is none."""
    found = numbers(text)
    assert found, f"no number in {text!r}"
    return found[0]


def line_with(out: str, start: str) -> str:
    """The first line of `out` that starts with `start` (leading spaces ignored); fails when none does."""
    found = [ln for ln in out.splitlines() if ln.strip().startswith(start)]
    assert found, f"no line starting {start!r} in:\n{out}"
    return found[0]


def table(out: str, first_header: str) -> List[Dict[str, str]]:
    """The rows of the last Markdown table in `out` whose header's first cell is `first_header`,
    each as {header: cell}."""
    lines = out.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |")]
    assert starts, f"no table headed {first_header!r} in:\n{out}"
    header = [c.strip() for c in lines[starts[-1]].strip("|").split("|")]
    rows = []
    for ln in lines[starts[-1] + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        assert len(cells) == len(header), f"row {ln!r} does not match header {header}"
        rows.append(dict(zip(header, cells)))
    return rows


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0
