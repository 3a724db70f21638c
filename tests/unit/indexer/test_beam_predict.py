"""Prediction as a per-shard Beam job (indexer/embedding/beam_predict.py) against the in-process path.

A tiny index with test-time augmentation and local features (so the job embeds with TTA and
verifies), queried by 60 test images in 4 shards made as finished `pipelines.preprocess
--split=test` output (`--test_records`). Every output predict writes must be byte-identical
between the two paths, on the DirectRunner and on a real 2-worker Dask cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from indexer import predict
from indexer.build import build
from indexer.embedding.embed_job import EmbedSettings
from pipelines import shard_index
from pipelines.cli.cli_errors import InputError
from tests.unit.indexer.indexer_helpers import IMAGE_SIZE, make_shards
from tests.unit.indexer.test_build_predict import build_config

OUTPUTS = ("submission.csv", "neighbours.csv", "verification.csv", "predict_stats.json")
SHARDS = 4
PER_CLASS = 10  # 60 queries, 15 per shard: in one batch of 64 they would differ in the last bits


@pytest.fixture(scope="module")
def index(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "idx"
    build(build_config(tiny_export, reference_shards, out, tta="flip", local_features=64))
    return out


@pytest.fixture(scope="module")
def test_records(tmp_path_factory):
    """60 query images in 4 test shards with shard_index.json and failures.csv, as preprocessing leaves them."""
    made = make_shards(tmp_path_factory.mktemp("made"), classes=6, per_class=1, val_per_class=PER_CLASS, size=IMAGE_SIZE,
                       shards=SHARDS, seed=1)
    records = tmp_path_factory.mktemp("test_records")
    rows = []
    for s in range(SHARDS):
        src = made / f"val-{s:05d}-of-{SHARDS:05d}.tfrecord"
        name = f"test-{s:05d}-of-{SHARDS:05d}.tfrecord"
        shutil.copy(src, records / name)
        rows.append(("test", shard_index.HASHED, name, 15, src.stat().st_size, {}))
    (records / shard_index.FILE).write_bytes(shard_index.build(IMAGE_SIZE, rows))
    (records / "failures.csv").write_text("id,url,reason,detail\nbroken,x.jpg,truncated,\n")
    return records


@pytest.fixture(scope="module")
def test_csv(tmp_path_factory):
    ids = [f"val-{c:03d}-{i:03d}" for c in range(6) for i in range(PER_CLASS)][::-1] + ["broken", "lost"]
    path = tmp_path_factory.mktemp("csv") / "test.csv"
    path.write_text("id,url\n" + "".join(f"{i},{i}.jpg\n" for i in ids))
    return path


def config(index, records, pred, **overrides) -> predict.PredictConfig:
    values = dict(index_dir=str(index), test_csv=None, test_records=records and str(records), output_dir=str(pred), k=5,
                  search_k=1000, min_confidence=0.0, vote="sum", visualize=0, solution=None, image_size=0,
                  batch_size=64)
    values.update(overrides)
    return predict.PredictConfig(**values)


@pytest.fixture(scope="module")
def in_process(index, test_records, test_csv, tmp_path_factory):
    pred = tmp_path_factory.mktemp("local")
    stats = predict.predict(config(index, test_records, pred, test_csv=str(test_csv),
                                   embedding=EmbedSettings("local")))
    assert stats == {"test_ids": 62, "embedded": 60, "failed": 1, "missing": 1, "below_min_confidence": 0,
                     "predicted": 60}
    assert not (pred / predict.RECORDS_DIR).exists() and not (pred / "preprocess.log").exists()
    return pred


def assert_same_outputs(a, b):
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_beam_job_writes_what_in_process_prediction_writes(index, test_records, test_csv, in_process, tmp_path):
    pred = tmp_path / "beam"
    predict.predict(config(index, test_records, pred, test_csv=str(test_csv), embedding=EmbedSettings("beam")))
    assert_same_outputs(in_process, pred)
    assert (in_process / "verification.csv").read_text().count("\n") > 60, "the index verified neighbours"
    parts = sorted(p.name for p in (pred / predict.SHARDS_DIR).iterdir())
    assert parts == [f"test-{s:05d}-of-{SHARDS:05d}.tfrecord.npz" for s in range(SHARDS)]


def test_batch_neighbours_vote_over_every_shard_as_in_one_process(index, test_records, test_csv, in_process,
                                                                   tmp_path):
    local, beam = tmp_path / "local", tmp_path / "beam"
    stats = predict.predict(config(index, test_records, local, test_csv=str(test_csv), batch_neighbours=True,
                                   embedding=EmbedSettings("local")))
    predict.predict(config(index, test_records, beam, test_csv=str(test_csv), batch_neighbours=True,
                           embedding=EmbedSettings("beam")))
    assert_same_outputs(local, beam)
    assert stats["votes_shared_with_batch"] > 0 and stats["predicted"] == 60
    assert (local / "neighbours.csv").read_bytes() == (in_process / "neighbours.csv").read_bytes()
    assert (local / "submission.csv").read_bytes() != (in_process / "submission.csv").read_bytes()


def test_rerun_redoes_only_the_missing_shard(index, test_records, test_csv, in_process, tmp_path):
    pred = tmp_path / "beam"
    settings = config(index, test_records, pred, test_csv=str(test_csv), embedding=EmbedSettings("beam"))
    predict.predict(settings)
    parts = pred / predict.SHARDS_DIR
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.iterdir()}
    lost = sorted(done)[1]
    (parts / lost).unlink()  # as if the run had died before finishing that shard
    (parts / (sorted(done)[0] + ".tmp-dead")).write_bytes(b"left by a killed worker")
    (pred / "submission.csv").unlink()
    predict.predict(settings)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.iterdir()}
    assert sorted(after) == sorted(done)
    assert [n for n in done if after[n] != done[n]] == [lost], "only the missing shard was redone"
    assert_same_outputs(in_process, pred)


def test_another_setting_redoes_every_shard(index, test_records, tmp_path):
    pred = tmp_path / "beam"
    predict.predict(config(index, test_records, pred, embedding=EmbedSettings("beam")))
    parts = pred / predict.SHARDS_DIR
    before = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    predict.predict(config(index, test_records, pred, k=3, embedding=EmbedSettings("beam")))
    assert all(p.stat().st_mtime_ns != before[p.name] for p in parts.iterdir())
    assert all(line.count(",") == 4 for line in (pred / "neighbours.csv").read_text().splitlines())


def test_records_without_a_csv_answer_their_ids_then_the_failures(index, test_records, in_process, tmp_path):
    pred = tmp_path / "pred"
    stats = predict.predict(config(index, test_records, pred, embedding=EmbedSettings("local")))
    assert stats["test_ids"] == 61 and stats["failed"] == 1 and stats["missing"] == 0
    lines = (pred / "submission.csv").read_text().splitlines()
    assert lines[-1] == "broken," and len(lines) == 62
    assert sorted(lines[1:]) == sorted(l for l in (in_process / "submission.csv").read_text().splitlines()[1:]
                                       if not l.startswith("lost,"))


def test_bad_test_records_are_refused_in_one_line(index, test_records, reference_shards, tmp_path):
    (tmp_path / "a_file").write_text("x")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(test_records, unfinished)
    (unfinished / shard_index.FILE).unlink()
    incomplete = tmp_path / "incomplete"
    shutil.copytree(test_records, incomplete)
    (incomplete / f"test-00001-of-{SHARDS:05d}.tfrecord").unlink()
    cases = [(tmp_path / "missing", "no such folder"), (tmp_path / "a_file", "not a folder"),
             (reference_shards, "holds train/val records, not test records"),
             (unfinished, "not a finished pipelines.preprocess output"),
             (incomplete, "test-00001-of-00004.tfrecord is listed in shard_index.json but missing")]
    for records, message in cases:
        pred = tmp_path / f"pred-{records.name}"
        with pytest.raises(InputError, match=message) as err:
            predict.predict(config(index, records, pred))
        assert "\n" not in str(err.value)
        assert not (pred / "submission.csv").exists()
    with pytest.raises(InputError, match="stored at 32 px, this prediction needs 64 px"):
        predict.predict(config(index, test_records, tmp_path / "size", image_size=64))


def test_the_test_csv_is_preprocessed_with_the_given_runner_flags_into_the_given_folder(
        index, test_records, test_csv, in_process, tmp_path, monkeypatch):
    calls = []

    def stage(cmd, stdout=None, stderr=None):  # stands in for the pipelines.preprocess subprocess
        calls.append(cmd)
        shutil.copytree(test_records, next(a.split("=", 1)[1] for a in cmd if a.startswith("--output_dir=")))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(predict.subprocess, "run", stage)
    records, pred = tmp_path / "shared" / "records", tmp_path / "pred"
    settings = config(index, None, pred, test_csv=str(test_csv), records_dir=str(records),
                      preprocess_flags=("--runner=dask", "--dask_workers=2"))
    predict.predict(settings)
    assert calls == [[sys.executable, "-m", "pipelines.preprocess", f"--csv={test_csv}", f"--output_dir={records}",
                      "--split=test", f"--image_size={IMAGE_SIZE}", "--overwrite", "--runner=dask",
                      "--dask_workers=2"]]
    assert (records / predict.DONE_MARKER).exists() and not (pred / predict.RECORDS_DIR).exists()
    assert_same_outputs(in_process, pred)
    predict.predict(settings)  # finished for this CSV: not preprocessed again
    assert len(calls) == 1
    with pytest.raises(ValueError, match="--test_records are finished records"):
        config(index, test_records, pred, preprocess_flags=("--runner=dask",))


def test_command_line_with_records_and_a_bad_records_folder(index, test_records, test_csv, in_process, tmp_path,
                                                            repo_root):
    pred = tmp_path / "cli"
    base = [sys.executable, "-m", "indexer.predict", f"--index_dir={index}", f"--output_dir={pred}", "--k=5",
            "--search_k=1000", "--batch_size=64"]
    subprocess.run([*base, f"--test_csv={test_csv}", f"--test_records={test_records}", "--embed_runner=beam",
                    "--direct_num_workers=1"], check=True, cwd=repo_root, capture_output=True)
    assert_same_outputs(in_process, pred)
    bad = subprocess.run([*base, f"--test_records={tmp_path / 'nowhere'}"], cwd=repo_root, capture_output=True,
                         text=True)
    assert bad.returncode != 0
    lines = [line for line in bad.stderr.splitlines() if "nowhere" in line]
    assert len(lines) == 1 and "no such folder" in lines[0] and "Traceback" not in bad.stderr, bad.stderr[-2000:]


def test_dask_cluster_gives_the_in_process_submission(index, test_records, test_csv, in_process, tmp_path):
    from tests.tools.dask_cluster import dask_cluster

    pred = tmp_path / "dask"
    with dask_cluster(workers=2) as address:
        predict.predict(config(index, test_records, pred, test_csv=str(test_csv),
                               embedding=EmbedSettings("auto", None, ("--runner=dask",), dask_address=address)))
    assert_same_outputs(in_process, pred)
    import numpy as np

    writers = set()
    for part in (pred / predict.SHARDS_DIR).iterdir():
        with np.load(part) as z:
            writers.add(__import__("json").loads(str(z["meta"]))["written_by"]["pid"])
    assert os.getpid() not in writers, "the shards were answered by the Dask workers"


def test_the_report_reads_the_records_predict_was_given(in_process, tmp_path):
    from indexer import report

    inputs = report.read_inputs(report.ReportConfig(predictions=str(in_process), output=str(tmp_path / "r.html")))
    assert inputs.failures == {"broken": "truncated"}


def test_make_predict_passes_records_and_the_preprocessing_flags(repo_root):
    done = subprocess.run(["make", "-n", "predict", "RECORDS=/r", "INDEX=/i", "OUT=/o",
                           "PREPROCESS=--runner=dask --dask_workers=2"], cwd=repo_root, capture_output=True, text=True)
    line = next(l for l in done.stdout.splitlines() if "indexer.predict" in l)
    assert '--test_records="/r"' in line and "--test_csv" not in line
    assert '--preprocess_arg="--runner=dask" --preprocess_arg="--dask_workers=2"' in line
    refused = subprocess.run(["make", "-n", "predict", "INDEX=/i"], cwd=repo_root, capture_output=True, text=True)
    assert refused.returncode != 0 and "TEST_CSV=..., IMAGES=DIR or RECORDS=DIR is required" in refused.stderr
