"""Red team of the TensorFlow-side command lines: what bad input, bad flags and damaged files get.

Each case was a silent wrong result or a raw traceback on the landed code (issues 13 and 14):
a damaged train or reference shard (DataLossError naming no file), expected errors printed as
tracebacks, NaN confidences and duplicate ids accepted by `evaluate`, `predict --k=0`, fetch flags
that `predict` could not pass on, and a rerun with another model shape that overwrote a run.
The command lines run as subprocesses (most stop before TensorFlow starts, in a second or two);
the rest runs in this process on tiny generated shards and a tiny export. docs/errors.md lists
what each bad input gets.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.unit.indexer.indexer_helpers import make_export, make_shards
from tests.unit.trainer.trainer_helpers import run_train

SHARD = "train-00000-of-00002.tfrecord"


def cli(repo_root: pathlib.Path, module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("LANDMARKS_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, env=env)


def one_error_line(done: subprocess.CompletedProcess, prog: str) -> str:
    """The single `<prog>: error: ...` line of a failed run (no traceback anywhere)."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), output[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> pathlib.Path:
    """4 landmarks x 4 train (+2 val) images of 32 px, 2 shards per split."""
    return make_shards(tmp_path_factory.mktemp("shards"), classes=4, per_class=4, val_per_class=2, size=32, shards=2)


def damaged_copy(shards: pathlib.Path, dest: pathlib.Path, how: str) -> pathlib.Path:
    """A copy of `shards` whose first train shard has 4 bytes overwritten mid-file, or is cut to 2/3."""
    shutil.copytree(shards, dest)
    path = dest / SHARD
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if how == "overwritten":
            f.seek(size // 2)
            f.write(b"\xde\xad\xbe\xef")
        else:
            f.truncate(size * 2 // 3)
    return dest


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> pathlib.Path:
    return make_export(tmp_path_factory.mktemp("export") / "export")


@pytest.fixture(scope="module")
def index(export, shards, tmp_path_factory) -> pathlib.Path:
    from indexer.build import BuildConfig, build

    out = tmp_path_factory.mktemp("idx") / "idx"
    build(BuildConfig(str(export), str(shards), str(out), n_trees=3, num_shards=1, splits=("train",), batch_size=16,
                      seed=0))
    return out


# --- 13.2: damaged shards ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_shard_check_names_the_damage_and_agrees_with_the_skipping_reader(shards, tmp_path, how):
    import tensorflow as tf

    from trainer.input import shard_check

    data = damaged_copy(shards, tmp_path / "data", how)
    files = sorted(str(p) for p in data.glob("train-*"))
    good, damage = shard_check.scan(files[0])
    assert damage is not None and damage.path == files[0] and damage.records_before == good < 8
    assert damage.problem == ("corrupted record" if how == "overwritten" else "truncated record")
    assert damage.bytes_lost == os.path.getsize(files[0]) - damage.offset and damage.records_lost >= 1
    assert shard_check.scan(files[1]) == (8, None)
    assert sum(1 for _ in shard_check.reader(True)(files[0])) == good
    with pytest.raises(tf.errors.DataLossError) as raised:
        list(tf.data.TFRecordDataset(files[::-1]))
    located = shard_check.locate(files, raised.value)
    assert located is not None and located.damage == damage
    report = shard_check.scan_all(files, log=lambda line: None)
    assert report.records == good + 8 and report.counts()["corrupt_shards"] == 1


def test_damaged_shard_skipped_and_counted_or_named_in_one_line_and_a_changed_shape_refused(shards, tmp_path,
                                                                                          repo_root):
    data = damaged_copy(shards, tmp_path / "data", "truncated")
    out = tmp_path / "out"
    done = run_train(data, out, "--skip_corrupt_records", "--epochs=1", "--steps_per_epoch=1")
    assert f"skipping the rest of a damaged shard: {data / SHARD}: truncated record at byte" in done.stdout
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1]
    assert all(r["corrupt_shards"] == 1 and r["corrupt_records_skipped"] >= 1 for r in history)
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())

    # the default: resumes (--epochs is no shape change), then stops at the damage, naming the file
    done = run_train(data, out, "--epochs=2", "--steps_per_epoch=1", check=False)
    assert "resumed from" in done.stdout and "Traceback" not in done.stdout and done.returncode != 0, done.stdout
    line = next(x for x in done.stdout.splitlines() if ": error: " in x)
    assert line.startswith(f"trainer: error: {data / SHARD}: truncated record at byte "), line
    assert "--skip_corrupt_records" in line

    # 14.3: another --embedding_dim into the same folder: refused, the old run untouched
    refused = cli(repo_root, "trainer.train", f"--data_dir={data}", f"--output_dir={out}", "--preset=tiny",
                  "--skip_corrupt_records", "--embedding_dim=32", "--epochs=2")
    line = one_error_line(refused, "trainer")
    assert f"{out / 'config.json'}: " in line and "--embedding_dim 16 -> 32" in line and "--overwrite" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints
    assert json.loads((out / "config.json").read_text())["embedding_dim"] == 16


def test_only_shape_flags_count_as_another_run(tmp_path):
    from trainer import config
    from trainer.run import run_dir

    base = config.Config(data_dir="d", output_dir=str(tmp_path), **config.PRESETS["tiny"])
    base.save(str(tmp_path))
    more_epochs = config.Config(**{**base.__dict__, "epochs": 9, "cpu_replicas": 2, "batch_p": 2})
    assert run_dir.changed_fields(str(tmp_path), more_epochs) == []
    run_dir.check_rerun(str(tmp_path), more_epochs, overwrite=False)
    other_loss = config.Config(**{**base.__dict__, "loss": "batch_hard", "image_size": 96})
    assert run_dir.changed_fields(str(tmp_path), other_loss) == ["--image_size 64 -> 96",
                                                                 "--loss semihard -> batch_hard"]
    with pytest.raises(config.ConfigError, match="batch_hard"):
        run_dir.check_rerun(str(tmp_path), other_loss, overwrite=False)
    run_dir.check_rerun(str(tmp_path), other_loss, overwrite=True)
    for name in ("checkpoints/ckpt-1.index", "logs/events", "export/export.json", ".worker-1/checkpoints/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("old run")
    (tmp_path / "history.json").write_text("[]")
    removed = run_dir.clear(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == [".worker-1", "checkpoints", "export", "history.json",
                                                            "logs"]
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_index_build_names_a_damaged_reference_shard_or_skips_it(export, shards, tmp_path, how):
    from indexer.store import index_dir
    from indexer.build import BuildConfig, build
    from trainer.input.shard_check import CorruptShardError

    data = damaged_copy(shards, tmp_path / "data", how)
    config = BuildConfig(str(export), str(data), str(tmp_path / "idx"), n_trees=3, num_shards=1, splits=("train",),
                         batch_size=4, seed=0)
    with pytest.raises(CorruptShardError, match=f"^{data / SHARD}: {'corrupted' if how == 'overwritten' else 'trunc'}"):
        build(config)
    build(BuildConfig(**{**config.__dict__, "skip_corrupt_records": True}))
    from trainer.input.shard_check import scan

    assert index_dir.open_index(str(tmp_path / "idx")).manifest.n_items == scan(str(data / SHARD))[0] + 8


# --- 13.3 / 13.4 / 14.5 / 14.8: one-line errors of every command line --------------------------


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def evaluate_args(tmp_path, submission: str, solution: str = "id,landmark_id\na,1\nb,2\n"):
    return (f"--submission={write(tmp_path / 'sub.csv', submission)}",
            f"--solution={write(tmp_path / 'sol.csv', solution)}")


@pytest.mark.parametrize("submission, solution, expected", [
    ("id,landmarks\na,1 0.9\nb,seven 0.5\n", None, r"sub.csv: row 3: landmarks must be '<landmark_id> <confidence>'"),
    ("id,landmarks\na,1 nan\nb,2 0.5\n", None, r"sub.csv: row 2: confidence 'nan' is not a finite number"),
    ("id,landmarks\na,1 0.5\nb,2 inf\n", None, r"sub.csv: row 3: confidence 'inf' is not a finite number"),
    ("id,landmarks\na,\nb,2 0.5\na,1 0.9\n", None, r"sub.csv: row 4: duplicate id 'a' \(first in row 2\)"),
    ("id,landmarks\na,1 0.9\n", "id,landmark_id\na,1\nb,2\na,3\n", r"sol.csv: row 4: duplicate id 'a'"),
    ("id,confidence\na,1\n", None, r"sub.csv: missing column\(s\) \['landmarks'\]"),
    ("id,landmarks\nzz,1 0.9\n", None, r"sub.csv: 1 id\(s\) not in the solution"),
])
def test_evaluate_refuses_bad_submissions_and_solutions_in_one_line(tmp_path, repo_root, submission, solution,
                                                                    expected):
    args = evaluate_args(tmp_path, submission, *([solution] if solution else []))
    line = one_error_line(cli(repo_root, "indexer.evaluate", *args), "indexer.evaluate")
    import re

    assert re.search(f"{tmp_path}/{expected}", line), line
    assert not (tmp_path / "metrics.json").exists()


def test_traceback_flag_shows_the_traceback(tmp_path, repo_root):
    args = evaluate_args(tmp_path, "id,landmarks\na,1 nan\n")
    done = cli(repo_root, "indexer.evaluate", *args, "--traceback")
    assert done.returncode != 0 and "Traceback" in done.stderr and "BadCsvError" in done.stderr


def test_predict_refuses_a_truncated_index_in_one_line_and_accepts_fetch_flags(index, tmp_path, repo_root):
    copy = tmp_path / "idx"
    shutil.copytree(index, copy)
    with open(copy / "index-00000-of-00001.ann", "r+b") as f:
        f.truncate(100)
    csv_path = write(tmp_path / "test.csv", "id,url\nq,q.jpg\n")
    done = cli(repo_root, "indexer.predict", f"--index_dir={copy}", f"--test_csv={csv_path}",
               f"--output_dir={tmp_path / 'pred'}", "--fetch_timeout=2", "--fetch_retries=0", "--backoff_s=0.1",
               "--fetch_threads=2", "--max_pixels=1000000", "--preprocess_arg=--direct_num_workers=1")
    line = one_error_line(done, "indexer.predict")
    assert line.startswith(f"indexer.predict: error: {copy / 'index-00000-of-00001.ann'}: "), line


def test_predict_reports_a_bad_test_csv_or_failed_preprocessing_in_one_line(index, tmp_path, repo_root,
                                                                           monkeypatch):
    from indexer import predict
    from pipelines.cli.cli_errors import InputError, one_line

    csv_path = write(tmp_path / "test.csv", "id,link\nq,q.jpg\n")
    done = cli(repo_root, "indexer.predict", f"--index_dir={index}", f"--test_csv={csv_path}",
               f"--output_dir={tmp_path / 'pred'}")
    assert one_error_line(done, "indexer.predict").startswith(
        f"indexer.predict: error: {csv_path}: header ['id', 'link'] lacks column(s) ['url']")

    def failing_run(cmd, stdout=None, stderr=None):
        stdout.write("INFO starting\npipelines.preprocess: error: something the user can fix\n")
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(predict.subprocess, "run", failing_run)
    csv_path.write_text("id,url\nq,q.jpg\n")
    config = predict.PredictConfig(str(index), str(csv_path), str(tmp_path / "pred2"), k=5, search_k=-1,
                                   min_confidence=0.0, vote="sum", visualize=0, solution=None, image_size=32,
                                   batch_size=8)
    os.makedirs(config.output_dir)
    with pytest.raises(InputError) as raised:
        predict.preprocess_test(config)
    assert one_line(raised.value) == (f"{csv_path}: pipelines.preprocess exited with 1 (log: {tmp_path}/pred2/"
                                      "preprocess.log): pipelines.preprocess: error: something the user can fix")


@pytest.mark.parametrize("flag, expected", [
    ("--k=0", "--k=0: at least 1 neighbour must vote"),
    ("--k=-3", "--k=-3: at least 1 neighbour must vote"),
    ("--search_k=0", "--search_k=0: -1 (Annoy's default, n_trees * k) or at least --k=10"),
    ("--search_k=-2", "--search_k=-2: -1"),
    ("--min_confidence=nan", "--min_confidence=nan: must be a finite number"),
])
def test_predict_refuses_settings_that_answer_nothing(index, tmp_path, repo_root, flag, expected):
    csv_path = write(tmp_path / "test.csv", "id,url\nq,q.jpg\n")
    done = cli(repo_root, "indexer.predict", f"--index_dir={index}", f"--test_csv={csv_path}",
               f"--output_dir={tmp_path / 'pred'}", flag)
    assert one_error_line(done, "indexer.predict").startswith(f"indexer.predict: error: {expected}")
    assert not (tmp_path / "pred").exists()


def test_predict_hands_fetch_settings_to_the_preprocessing(index, tmp_path, monkeypatch):
    from indexer import predict

    calls = []

    def fake_run(cmd, stdout=None, stderr=None):
        calls.append(cmd)
        os.makedirs(tmp_path / "pred" / predict.RECORDS_DIR)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(predict.subprocess, "run", fake_run)
    csv_path = write(tmp_path / "test.csv", "id,url\nq,q.jpg\n")
    flags = ("--fetch_timeout=2.0", "--fetch_retries=0", "--max_pixels=1000000")
    config = predict.PredictConfig(str(index), str(csv_path), str(tmp_path / "pred"), k=5, search_k=-1,
                                   min_confidence=0.0, vote="sum", visualize=0, solution=None, image_size=32,
                                   batch_size=8, preprocess_flags=flags)
    os.makedirs(config.output_dir)
    predict.preprocess_test(config)
    assert calls[0][-3:] == list(flags)


@pytest.mark.parametrize("module, args, expected", [
    ("indexer.build", ("--model={tmp}/no-export", "--data_dir={tmp}", "--output_dir={tmp}/idx"),
     "indexer.build: error: no train/val shards in {tmp}"),
    ("pipelines.preprocess", ("--csv={tmp}/missing.csv", "--output_dir={tmp}/out"),
     "pipelines.preprocess: error: {tmp}/missing.csv: does not exist (--csv)"),
    ("demo.run", ("--data_dir={tmp}", "--output_dir={tmp}/demo"),
     "demo: error: {tmp} lacks train.csv, test.csv, test_solution.csv"),
    ("trainer.train", ("--data_dir={tmp}", "--output_dir={tmp}/out", "--batch=3"),
     "trainer: error: --batch=3: expected P,K"),
])
def test_every_command_line_reports_bad_input_in_one_line(tmp_path, repo_root, module, args, expected):
    done = cli(repo_root, module, *(a.format(tmp=tmp_path) for a in args))
    line = one_error_line(done, module.split(".")[0] if module in ("demo.run", "trainer.train") else module)
    assert line.startswith(expected.format(tmp=tmp_path)), line
