"""`bench.bench_preprocess --smoke`: the stage costs, the bare loop and a co-scheduled pipeline run."""

from __future__ import annotations

import re

from bench.stage_costs import STAGES
from tests.bench.helpers import line_with, numbers, positive, run_smoke


def test_smoke_measures_stages_bare_loop_and_the_pipeline():
    out = run_smoke("bench_preprocess")
    assert line_with(out, "8 rows over 4 JPEGs 1024x768")
    lines = out.splitlines()
    stages = lines[lines.index("per-image CPU of the pipeline's stages (one thread, microseconds):") + 1]
    for stage in STAGES:
        found = re.search(re.escape(stage) + r" (\d+)", stages)
        assert found, (stage, stages)
        assert int(found.group(1)) >= 0
    for stage in ("header+decode", "resize", "encode"):
        assert int(re.search(re.escape(stage) + r" (\d+)", stages).group(1)) > 0, stages
    peers = line_with(out, "on the same images in the same turns:")
    assert all(positive(x) for x in numbers(peers)), peers

    # Seconds and wall rates are printed to 0.1, so a short or starved run can show 0.0; the
    # per-CPU-second figures cannot.
    for label in ("bare PIL loop #1", "bare PIL loop #2", "bare PIL loops, co-scheduled"):
        line = line_with(out, label)
        assert all(x >= 0 for x in numbers(line.split("wall", 1)[1])), line
        assert positive(float(re.search(r"([\d.]+) per CPU-second", line).group(1))), line
    run = line_with(out, "pipeline in_memory, files")
    assert "ONLY" not in run  # every row written
    assert all(x >= 0 for x in numbers(run.split("wall", 1)[1].split("[")[0])), run
    assert positive(float(re.search(r"([\d.]+) per CPU-second", run).group(1))), run
    headline = line_with(out, "vs bare loop, pipeline in_memory")
    ratio = re.search(r"per CPU-second ([\d.]+)x \(([\d.]+) vs ([\d.]+)", headline)
    assert ratio, headline
    assert float(ratio.group(1)) >= 0 and positive(float(ratio.group(2))) and positive(float(ratio.group(3))), headline
    assert positive(numbers(line_with(out, "per image, pipeline in_memory, files:").split(":", 1)[1])[0])
    assert "img2dataset" not in out.split("HEADLINE", 1)[1]  # --smoke runs no peer
