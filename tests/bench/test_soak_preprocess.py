"""`bench.soak_preprocess --smoke`: the soak's checks on the default runner and on Dask, side by side
(`make soak-preprocess` and, but for its multi-processing row, `make soak-preprocess-dask`)."""

from __future__ import annotations

import re

from tests.bench.helpers import line_with, number, numbers, positive, run_smoke


def test_smoke_soak_passes_every_check_on_each_runner(tmp_path):
    out = run_smoke("soak_preprocess", "--runners=default,dask", tmpdir=tmp_path)  # exits 1 when a check fails
    assert not list(tmp_path.glob("soak_preprocess_*"))  # its folder is deleted when every check passed
    assert line_with(out, "100 rows (80 good, 20 bad)")
    for runner in ("default", "dask"):
        part = out.split(f"--- {runner}\n", 1)[1].split("\n---", 1)[0]
        assert line_with(part, "written 80 (expected 80), failed 20 (expected 20)")
        checks = re.findall(r"\[(ok|FAIL)\] ", part)
        assert len(checks) == 7 and set(checks) == {"ok"}, part
        assert all(positive(x) for x in numbers(line_with(part, "wall"))), part
    header = line_with(out, "runner")
    assert header.split()[:6] == ["runner", "wall", "s", "img/s", "img/s/core", "img/CPU-s"]
    for runner in ("default", "dask"):
        row = line_with(out, f"{runner} ")
        figures = numbers(row)
        assert len(figures) == 5 and all(positive(x) for x in figures), row
        assert row.split()[-1] == "ok", row
    assert number(line_with(out, "good images written per second")) > 0
