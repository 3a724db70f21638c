"""bench/neighbours_gap.py: which demo stages it reruns on the Annoy path, where their outputs go, and
the GAP and penalty comparison (the stage commands themselves are stubbed: a demo costs minutes)."""

from __future__ import annotations

import json
import os

import numpy as np

from bench import neighbours_gap


def stage(out, name, *args):
    os.makedirs(out / "stages", exist_ok=True)
    (out / "stages" / f"{name}.json").write_text(json.dumps({"command": ["-m", *args], "seconds": 1.0}))


def metrics(path, gap, top1):
    os.makedirs(path, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"gap": gap, "accuracy": top1}))


def test_reruns_only_penalty_and_dba_indexes_under_annoy(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    for key, extra in (("plain", ()), ("pen", ("--other_landmark_penalty",))):
        stage(out, f"index_{key}", "indexer.build", f"--output_dir={out}/index/{key}", *extra)
        stage(out, f"predict_{key}", "indexer.predict", f"--index_dir={out}/index/{key}",
              f"--output_dir={out}/predict/{key}")
        stage(out, f"evaluate_{key}", "indexer.evaluate", f"--submission={out}/predict/{key}/submission.csv",
              f"--output_dir={out}/eval/{key}")
        metrics(out / "eval" / key, 0.5, 0.6)
    stage(out, "predict_random", "demo.random")  # no index: skipped
    os.makedirs(out / "index" / "pen")
    np.save(out / "index" / "pen" / "penalties.npy", np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    ran = []

    def fake_run(command, done):
        ran.append(command)
        folder = os.path.dirname(done)
        os.makedirs(folder, exist_ok=True)
        if command[1] == "indexer.build":
            np.save(os.path.join(folder, "penalties.npy"), np.array([0.1, 0.2, 0.3, 0.5], np.float32))
        if command[1] == "indexer.evaluate":
            metrics(type(out)(folder), 0.503, 0.6)

    monkeypatch.setattr(neighbours_gap, "_run", fake_run)
    rows = neighbours_gap.compare(str(out))
    assert [c[1] for c in ran] == ["indexer.build", "indexer.predict", "indexer.evaluate"]
    assert f"--output_dir={out}/annoy/index/pen" in ran[0] and ran[0][-1] == "--neighbours_exact_below=0"
    assert f"--index_dir={out}/annoy/index/pen" in ran[1] and f"--output_dir={out}/annoy/predict/pen" in ran[1]
    assert f"--submission={out}/annoy/predict/pen/submission.csv" in ran[2]
    assert len(rows) == 1 and rows[0]["method"] == "pen"
    assert (rows[0]["gap_exact"], rows[0]["gap_annoy"], rows[0]["same_penalty"]) == (0.5, 0.503, 0.75)
    assert "| pen | 0.5000 | 0.5030 | +0.0030 |" in neighbours_gap.report(rows)
