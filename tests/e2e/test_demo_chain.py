"""`make demo --quick`: the whole chain on a tiny generated set, through the real CLIs.

Every stage runs as a subprocess (this pytest process has TensorFlow; the generator and the Beam
stage must not share it). Checks every artefact exists and agrees with the others, that a rerun
resumes by skipping every completed stage, and that a failing stage is named.
"""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import pytest
from PIL import Image

RECOMMENDED = "arcface-aqe-verify-otherpen"  # the trained model + the quick mode's recommended options
METHODS = ("random", "base", "arcface", RECOMMENDED)
MODELS = ("base", "arcface")


def run_demo(repo_root: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo.run", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=400)


def ids(path: pathlib.Path, column: str = "id") -> list[str]:
    with open(path, newline="") as f:
        return [row[column] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def demo(repo_root, tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    proc = run_demo(repo_root, f"--output_dir={out}", "--quick")
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out, proc


def test_every_artefact_exists(demo):
    out, _ = demo
    expected = ["data/train.csv", "data/test.csv", "data/test_solution.csv", "data/landmarks.csv",
                "records/stats.json", "results.md", "results.json", "accuracy_vs_k.png", "neighbours.png"]
    for model in MODELS:
        expected += [f"models/{model}/export/export.json", f"models/{model}/export/embedding.keras",
                     f"models/{model}/export/saved_model/saved_model.pb", f"index/{model}/manifest.json",
                     f"index/{model}/items.csv", f"predict/{model}/neighbours.png"]
    for method in METHODS:
        expected += [f"predict/{method}/submission.csv", f"predict/{method}/neighbours.csv",
                     f"eval/{method}/metrics.json", f"eval/{method}/accuracy_vs_k.png"]
    missing = [p for p in expected if not (out / p).is_file()]
    assert not missing
    for png in ("accuracy_vs_k.png", "neighbours.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_models_are_the_untrained_and_the_trained_network(demo):
    out, _ = demo
    base = json.loads((out / "models/base/export/export.json").read_text())
    trained = json.loads((out / "models/arcface/export/export.json").read_text())
    assert base["epochs_trained"] == 0 and trained["epochs_trained"] >= 1


def test_index_holds_every_reference_record(demo):
    out, _ = demo
    stats = json.loads((out / "records/stats.json").read_text())
    references = stats["written_by_split"].get("train", 0) + stats["written_by_split"].get("val", 0)
    assert references == len(ids(out / "data/train.csv"))
    for model in MODELS:
        manifest = json.loads((out / f"index/{model}/manifest.json").read_text())
        assert manifest["n_items"] == references == len(ids(out / f"index/{model}/items.csv", "image_id"))


def test_every_test_id_is_answered_by_every_method(demo):
    out, _ = demo
    test_ids = ids(out / "data/test.csv")
    train_ids = set(ids(out / "data/train.csv"))
    for method in METHODS:
        assert sorted(ids(out / f"predict/{method}/submission.csv")) == sorted(test_ids), method
        neighbour_rows = ids(out / f"predict/{method}/neighbours.csv")
        assert set(neighbour_rows) == set(test_ids), method
        assert set(ids(out / f"predict/{method}/neighbours.csv", "neighbour_id")) <= train_ids, method


def test_results_table_has_every_method_and_metric(demo):
    out, proc = demo
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == [
        "random guess", "untrained network + KNN", "ArcFace-trained network + KNN",
        "ArcFace-trained network + KNN + query expansion (AQE), spatial verification, other-landmark penalty"]
    predict_config = json.loads((out / f"predict/{RECOMMENDED}/config.json").read_text())
    assert predict_config["rerank"] == "aqe" and predict_config["verify_k"] == 10
    manifest = json.loads((out / f"index/{RECOMMENDED}/manifest.json").read_text())
    assert manifest["local_features"]["n_items"] == manifest["n_items"]
    assert [e["name"] for e in manifest["extras"]] == ["penalties.npy"]
    solution = ids(out / "data/test_solution.csv", "landmark_id")
    for row, method in zip(results["rows"], METHODS):
        metrics = json.loads((out / f"eval/{method}/metrics.json").read_text())
        assert metrics["queries"] == len(solution)
        assert metrics["landmark_queries"] == sum(1 for s in solution if s)
        for key, source in (("top1", "accuracy"), ("top5", "top5"), ("gap", "gap")):
            assert 0.0 <= row[key] <= 1.0 and row[key] == metrics[source]
        assert row["seconds"] > 0
        if method not in ("random", RECOMMENDED):  # the answer is the neighbours' vote (random: drawn apart)
            assert row["top1"] == metrics["top1"] <= row["top5"]
    table = (out / "results.md").read_text()
    assert "| method | top-1 | top-5 | GAP | seconds |" in table
    assert all(r["method"] in proc.stdout for r in results["rows"])


def test_rerun_resumes_by_skipping_completed_stages(demo, repo_root):
    out, _ = demo
    before = (out / "results.json").read_text()
    proc = run_demo(repo_root, f"--output_dir={out}", "--quick")
    assert proc.returncode == 0, proc.stderr[-4000:]
    skipped = [line for line in proc.stdout.splitlines() if "already complete, skipped" in line]
    stages = sorted(p.stem for p in (out / "stages").glob("*.json"))
    assert len(skipped) == len(stages) == 15  # the recommended row builds its own index (local features)
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(before)["rows"]


def test_a_failing_stage_is_named(repo_root, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("name,where\nx,y\n")  # no id/url columns: preprocessing refuses it
    (data / "test.csv").write_text("id,url\n")
    (data / "test_solution.csv").write_text("id,landmark_id\n")
    proc = run_demo(repo_root, f"--output_dir={tmp_path / 'out'}", f"--data_dir={data}", "--quick")
    assert proc.returncode != 0
    assert "FAILED at stage 'records'" in proc.stderr
    assert not (tmp_path / "out/stages/records.json").exists()


def test_a_fresh_run_prints_the_same_table_to_the_last_digit(demo, repo_root, tmp_path):
    # --deterministic is the demo's default: op determinism in training, one thread per Annoy build.
    out, _ = demo
    proc = run_demo(repo_root, f"--output_dir={tmp_path / 'again'}", "--quick")
    assert proc.returncode == 0, proc.stderr[-4000:]

    def table(folder: pathlib.Path) -> list:
        return [{k: v for k, v in row.items() if k != "seconds"}
                for row in json.loads((folder / "results.json").read_text())["rows"]]

    assert table(tmp_path / "again") == table(out)
