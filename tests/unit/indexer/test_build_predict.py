"""Index folder build/open, prediction and evaluation on tiny generated shards.

Prediction's preprocessing subprocess is skipped the way a rerun skips it: the test writes
PRED/test_records itself (make_shards' val shards renamed to test-*, a failures.csv) and the
finished-input marker, so these tests need neither Beam nor the trainer.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indexer import predict
from indexer.store import index_dir
from indexer.store.annoy_index import IndexIntegrityError
from indexer.build import BuildConfig, build
from indexer.evaluate import EvaluateConfig, evaluate
from indexer.outputs import read_neighbours, read_submission, write_json
from tests.unit.indexer.indexer_helpers import EMBEDDING_DIM


def build_config(export, records, out, **overrides) -> BuildConfig:
    values = dict(model=str(export), data_dir=str(records), output_dir=str(out), n_trees=5, num_shards=1,
                  splits=("train",), batch_size=16, seed=0)
    values.update(overrides)
    return BuildConfig(**values)


@pytest.fixture(scope="module")
def built(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "idx"
    build(build_config(tiny_export, reference_shards, out))
    return out


def test_build_writes_a_complete_self_contained_folder(built):
    names = sorted(os.listdir(built))
    assert names == ["config.json", "index-00000-of-00001.ann", "items.csv", "manifest.json", "model"]
    manifest = index_dir.read_manifest(str(built))
    assert (manifest.dimension, manifest.metric, manifest.n_items, manifest.n_trees) == (
        EMBEDDING_DIM, "angular", 36, 5)
    assert manifest.shards[0].name == "index-00000-of-00001.ann" and manifest.shards[0].n_items == 36
    assert manifest.reference_image_size == 32  # from the records' shard_index.json, for predict
    assert manifest.shards[0].size == os.path.getsize(built / manifest.shards[0].name)
    assert json.loads((built / "config.json").read_text())["n_trees"] == 5
    index = index_dir.open_index(str(built))
    assert index.image_ids[0] == "train-000-000" and index.landmark_ids.tolist()[:3] == [0, 0, 0]


def test_the_index_folder_works_without_the_original_export(tiny_export, reference_shards, tmp_path):
    from indexer.embedding.embed import Embedder, embed_records, list_shards

    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    build(build_config(export, reference_shards, tmp_path / "idx"))
    shutil.rmtree(export)
    index = index_dir.open_index(str(tmp_path / "idx"))
    embedded = embed_records(list_shards(str(reference_shards), ["val"]), Embedder(index.model_dir))
    items, _ = index.searcher.query(embedded.vectors, k=3)
    assert items.shape == (12, 3) and (items >= 0).all()


def test_each_reference_is_its_own_nearest_neighbour(built):
    index = index_dir.open_index(str(built))
    from indexer.embedding.embed import Embedder, embed_records, list_shards

    embedded = embed_records(list_shards(index.manifest.data_dir, ["train"]), Embedder(index.model_dir))
    items, sims = index.searcher.query(embedded.vectors, k=1, search_k=1000)
    assert items[:, 0].tolist() == list(range(36))
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_sharded_build_answers_like_the_unsharded_one(built, tiny_export, reference_shards, tmp_path):
    build(build_config(tiny_export, reference_shards, tmp_path, num_shards=3))
    sharded = index_dir.open_index(str(tmp_path))
    assert [s.n_items for s in sharded.manifest.shards] == [12, 12, 12]
    plain = index_dir.open_index(str(built))
    queries = np.random.default_rng(0).standard_normal((10, EMBEDDING_DIM)).astype(np.float32)
    a = plain.searcher.query(queries, k=6, search_k=10_000)
    b = sharded.searcher.query(queries, k=6, search_k=10_000)
    np.testing.assert_array_equal(a[0], b[0])
    # rebuilding the same folder unsharded removes the three shard files
    build(build_config(tiny_export, reference_shards, tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.ann")) == ["index-00000-of-00001.ann"]


def test_interrupted_build_leaves_no_index_and_keeps_the_previous_one(tiny_export, reference_shards, tmp_path,
                                                                      monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-build")

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(index_dir, "build_sharded", crash)
    with pytest.raises(KeyboardInterrupt):
        build(build_config(tiny_export, reference_shards, fresh))
    assert os.listdir(fresh) == []
    with pytest.raises(IndexIntegrityError, match="no manifest.json"):
        index_dir.open_index(str(fresh))
    monkeypatch.undo()

    previous = tmp_path / "previous"
    build(build_config(tiny_export, reference_shards, previous))
    before = index_dir.read_manifest(str(previous))
    monkeypatch.setattr(index_dir, "build_sharded", crash)
    with pytest.raises(KeyboardInterrupt):
        build(build_config(tiny_export, reference_shards, previous, n_trees=9))
    assert index_dir.open_index(str(previous)).manifest == before
    assert not [n for n in os.listdir(previous) if n.startswith(".staging")]


def test_killed_build_is_cleaned_up_by_the_rerun(tiny_export, reference_shards, tmp_path):
    stale = tmp_path / ".staging-99999"
    stale.mkdir(parents=True)
    (stale / "index-00000-of-00001.ann").write_bytes(b"half")
    build(build_config(tiny_export, reference_shards, tmp_path))
    assert not stale.exists()
    index_dir.open_index(str(tmp_path))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "index-00000-of-00001.ann").write_bytes((d / "index-00000-of-00001.ann").read_bytes()[:1000]),
     "truncated"),
    (lambda d: (d / "items.csv").write_text("item,image_id,landmark_id\n0,x,1\n"), "items.csv"),
    (lambda d: (d / "model" / "export.json").write_text("{}"), "fingerprint"),
    (lambda d: (d / "manifest.json").write_text((d / "manifest.json").read_text().replace('"angular"', '"euclidean"')),
     "metric"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "unreadable manifest"),
])
def test_damaged_folder_is_refused_with_a_clear_error(built, tmp_path, damage, message):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    damage(copy)
    with pytest.raises(IndexIntegrityError, match=message):
        index_dir.open_index(str(copy))


def test_wrong_model_dimension_is_refused(built):
    with pytest.raises(IndexIntegrityError, match="dimension 16, the model produces 32"):
        index_dir.open_index(str(built), dimension=32)


def fake_preprocessed(pred, reference_shards, config) -> None:
    """PRED/test_records as pipelines.preprocess --split=test would leave it, plus its marker."""
    records = pred / predict.RECORDS_DIR
    records.mkdir(parents=True)
    for src in sorted(reference_shards.glob("val-*.tfrecord")):
        shutil.copy(src, records / src.name.replace("val-", "test-"))
    (records / "failures.csv").write_text("id,url,reason\nbroken,x.jpg,truncated\n")
    write_json(str(records / predict.DONE_MARKER), predict.input_marker(config))


def predict_config(built, csv_path, pred, **overrides) -> predict.PredictConfig:
    values = dict(index_dir=str(built), test_csv=str(csv_path), output_dir=str(pred), k=5, search_k=1000,
                  min_confidence=0.0, vote="sum", visualize=0, solution=None, image_size=32, batch_size=16)
    values.update(overrides)
    return predict.PredictConfig(**values)


@pytest.fixture
def test_csv(tmp_path):
    """val ids of all 6 classes, a failed image, one the records lack, a duplicate row."""
    ids = [f"val-{c:03d}-{i:03d}" for c in range(6) for i in range(2)] + ["broken", "lost", "val-000-000"]
    path = tmp_path / "test.csv"
    path.write_text("id,url\n" + "".join(f"{i},{i}.jpg\n" for i in ids))
    solution = tmp_path / "solution.csv"
    solution.write_text("id,landmark_id\n" + "".join(f"val-{c:03d}-{i:03d},{c}\n" for c in range(6) for i in range(2))
                        + "broken,\nlost,3\n")
    return path, solution


def test_predict_preprocesses_test_images_at_the_size_the_references_used(built, reference_shards, tmp_path,
                                                                         test_csv):
    pred = tmp_path / "pred"
    config = predict_config(built, test_csv[0], pred, image_size=0)
    # Finished test records for 32 px: predict reuses them only if it resolved --image_size=0 to 32.
    fake_preprocessed(pred, reference_shards, dataclasses.replace(config, image_size=32))
    assert predict.predict(config)["embedded"] == 12
    assert not (pred / "preprocess.log").exists()  # no preprocessing run at another size


def test_predict_answers_every_test_id_and_evaluate_scores_it(built, reference_shards, tmp_path, test_csv):
    csv_path, solution = test_csv
    pred = tmp_path / "pred"
    config = predict_config(built, csv_path, pred, visualize=4, solution=str(solution))
    fake_preprocessed(pred, reference_shards, config)
    stats = predict.predict(config)
    assert stats == {"test_ids": 14, "embedded": 12, "failed": 1, "missing": 1, "below_min_confidence": 0,
                     "predicted": 12}
    with open(pred / "submission.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"val-{c:03d}-{i:03d}" for c in range(6) for i in range(2)] + ["broken", "lost"]
    assert rows[-2]["landmarks"] == "" and rows[-1]["landmarks"] == ""
    submitted = read_submission(str(pred / "submission.csv"))
    assert all(0 <= conf <= 1 for _, conf in submitted.values())
    neighbours = read_neighbours(str(pred / "neighbours.csv"))
    assert len(neighbours) == 12 and all(len(v) == 5 for v in neighbours.values())
    assert (pred / "neighbours.png").stat().st_size > 10_000
    assert json.loads((pred / "config.json").read_text())["k"] == 5

    result = evaluate(EvaluateConfig(str(pred / "submission.csv"), str(solution), str(pred / "neighbours.csv"),
                                     str(pred), "sum"))
    assert result["queries"] == 14 and result["landmark_queries"] == 13 and result["predicted"] == 12
    # "lost" is a landmark query without an answer: at most 12 of 13 can be right
    assert result["accuracy"] <= 12 / 13 and result["gap"] <= 12 / 13
    assert result["top1"] >= 0.5, result  # 6 classes: chance is 1/6
    assert result["top5"] >= result["top1"] and len(result["accuracy_vs_k"]) == 5
    assert json.loads((pred / "metrics.json").read_text())["gap"] == pytest.approx(result["gap"])
    assert (pred / "accuracy_vs_k.png").stat().st_size > 5_000


def test_min_confidence_turns_answers_into_no_landmark(built, reference_shards, tmp_path, test_csv):
    csv_path, _ = test_csv
    pred = tmp_path / "pred"
    config = predict_config(built, csv_path, pred, min_confidence=1.01)
    fake_preprocessed(pred, reference_shards, config)
    stats = predict.predict(config)
    assert stats["predicted"] == 0 and stats["below_min_confidence"] == 12
    assert read_submission(str(pred / "submission.csv")) == {}


def test_predict_refuses_a_damaged_index_before_preprocessing(built, tmp_path, test_csv):
    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    with open(copy / "index-00000-of-00001.ann", "r+b") as f:
        f.truncate(100)
    pred = tmp_path / "pred"
    with pytest.raises(IndexIntegrityError, match="truncated"):
        predict.predict(predict_config(copy, test_csv[0], pred))
    assert not (pred / predict.RECORDS_DIR).exists()


def test_build_and_evaluate_command_lines(tiny_export, reference_shards, tmp_path, repo_root):
    idx = tmp_path / "idx"
    subprocess.run([sys.executable, "-m", "indexer.build", f"--model={tiny_export}", f"--data_dir={reference_shards}",
                    f"--output_dir={idx}", "--n_trees=3", "--num_shards=2",
                    "--embed_runner=beam", "--direct_num_workers=1"],  # a flag build does not know goes to Beam
                   check=True, cwd=repo_root)
    assert len(index_dir.open_index(str(idx)).manifest.shards) == 2
    assert len(list((idx / "embeddings").glob("*.tfrecord.npz"))) == 4, "embedded by the Beam job, per shard"
    assert json.loads((idx / "config.json").read_text())["embedding"]["beam_args"] == ["--direct_num_workers=1"]
    (tmp_path / "sub.csv").write_text("id,landmarks\na,1 0.9\nb,\n")
    (tmp_path / "sol.csv").write_text("id,landmark_id\na,1\nb,2\n")
    out = subprocess.run([sys.executable, "-m", "indexer.evaluate", f"--submission={tmp_path / 'sub.csv'}",
                          f"--solution={tmp_path / 'sol.csv'}"], check=True, cwd=repo_root, capture_output=True,
                         text=True).stdout
    assert "gap: 0.5000" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == 0.5


def fake_preprocess(reference_shards, calls, rc=0):
    """Stands in for the `pipelines.preprocess` subprocess: records the command, writes what the
    stage writes (test shards, failures.csv) or fails with `rc`."""

    def run(cmd, stdout=None, stderr=None):
        calls.append(cmd)
        if rc:
            stdout.write("Traceback: preprocess blew up\n")
            return subprocess.CompletedProcess(cmd, rc)
        out = next(a.split("=", 1)[1] for a in cmd if a.startswith("--output_dir="))
        os.makedirs(out, exist_ok=True)
        for src in sorted(reference_shards.glob("val-*.tfrecord")):
            shutil.copy(src, os.path.join(out, src.name.replace("val-", "test-")))
        with open(os.path.join(out, "failures.csv"), "w") as f:
            f.write("id,url,reason\nbroken,x.jpg,truncated\n")
        return subprocess.CompletedProcess(cmd, 0)

    return run


def test_preprocessing_runs_once_per_csv_and_starts_over_for_another(built, reference_shards, tmp_path, test_csv,
                                                                     monkeypatch):
    csv_path, _ = test_csv
    pred = tmp_path / "pred"
    calls = []
    monkeypatch.setattr(predict.subprocess, "run", fake_preprocess(reference_shards, calls))
    config = predict_config(built, csv_path, pred)
    predict.predict(config)
    assert calls == [[sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}",
                      f"--output_dir={pred / predict.RECORDS_DIR}", "--split=test", "--image_size=32", "--overwrite"]]
    predict.predict(config)  # a rerun reuses the finished records
    assert len(calls) == 1
    predict.predict(dataclasses.replace(config, preprocess_flags=("--retry_failed",)))  # unless asked to retry
    assert len(calls) == 2 and calls[-1][-1] == "--retry_failed"
    stale = pred / predict.RECORDS_DIR / "test-00007-of-00009.tfrecord"
    stale.write_bytes(b"from the old CSV")
    csv_path.write_text(csv_path.read_text() + "extra,extra.jpg\n")
    stats = predict.predict(config)
    assert len(calls) == 3 and not stale.exists() and stats["test_ids"] == 15


def test_failed_preprocessing_is_reported_with_its_log(built, reference_shards, tmp_path, test_csv, monkeypatch):
    calls = []
    monkeypatch.setattr(predict.subprocess, "run", fake_preprocess(reference_shards, calls, rc=2))
    pred = tmp_path / "pred"
    with pytest.raises(RuntimeError, match="exited with 2(.|\n)*preprocess blew up"):
        predict.predict(predict_config(built, test_csv[0], pred))
    assert not (pred / "submission.csv").exists()


def test_predict_embeds_queries_with_a_beam_job_like_in_process(built, reference_shards, tmp_path, test_csv):
    from indexer.embedding.embed_job import EmbedSettings

    csv_path, _ = test_csv
    for name, embedding in (("local", EmbedSettings("local")), ("beam", EmbedSettings("beam"))):
        config = predict_config(built, csv_path, tmp_path / name, embedding=embedding)
        fake_preprocessed(tmp_path / name, reference_shards, config)
        assert predict.predict(config)["predicted"] == 12
    assert len(list((tmp_path / "beam" / predict.SHARDS_DIR).glob("test-*.npz"))) == 2, "one answer file per shard"
    for name in ("submission.csv", "neighbours.csv"):  # the per-shard job: byte for byte (test_beam_predict.py)
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "beam" / name).read_bytes()
