"""Issue 25, the trainer's side: a rerun never trains "from scratch" over a run's checkpoints
(the ArcFace class count is part of the run's shape; checkpoints that all fail to restore refuse
the run), numbers are checked once (pipelines/cli/flag_checks.py), a batch that needs more landmarks
than the data holds is one line, and so is an output folder that is a file."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.unit.trainer.trainer_helpers import REPO, make_shards, run_train
from pipelines.cli import flag_checks
from trainer import config
from trainer.run import run_dir

NAN, INF = float("nan"), float("inf")


def tiny(tmp_path, **fields) -> config.Config:
    return config.Config(**{**dict(data_dir="d", output_dir=str(tmp_path), **config.PRESETS["tiny"]), **fields})


def snapshot(folder: pathlib.Path) -> dict:
    """name -> sha256 of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("field, value, shown", [
    ("classes", 4, "train landmarks (ArcFace classes) 8 -> 4"),
    ("arcface_subcenters", 3, "--arcface_subcenters 1 -> 3"),
])
def test_the_class_count_and_subcenters_are_part_of_the_run_shape(tmp_path, field, value, shown):
    tiny(tmp_path, loss="arcface", classes=8).save(str(tmp_path))
    rerun = tiny(tmp_path, **{"loss": "arcface", "classes": 8, field: value})
    assert run_dir.changed_fields(str(tmp_path), rerun) == [shown]
    with pytest.raises(config.ConfigError, match="--overwrite"):
        run_dir.check_rerun(str(tmp_path), rerun, overwrite=False)


def test_checkpoints_that_all_fail_to_restore_refuse_the_run_and_stay(tmp_path):
    import keras

    from trainer.run.checkpoints import TrainingState, UnreadableRunError

    def state(classes: int) -> TrainingState:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(classes)])
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)
        return TrainingState(str(tmp_path / "checkpoints"), model, optimizer, keep=2)

    first = state(8)
    first.save(1)
    first.save(2)
    before = snapshot(tmp_path)
    assert state(8).restore().endswith("ckpt-2")  # the same shape resumes
    with pytest.raises(UnreadableRunError, match=r"checkpoints: none of its 2 checkpoint\(s\) can be read.*--overwrite"):
        state(4).restore()
    assert snapshot(tmp_path) == before
    assert state(8).restore().endswith("ckpt-2")


@pytest.mark.parametrize("fields, message", [
    (dict(backbone="mobilenet", alpha=NAN), "--alpha=nan: must be a finite number > 0"),
    (dict(learning_rate=INF), "--learning_rate=inf: must be a finite number > 0"),
    (dict(arcface_scale=INF), "--arcface_scale=inf"),
    (dict(bn_momentum=NAN), "--bn_momentum"),
    (dict(recall_k=(0, 5)), "--recall_k=0: must be an integer >= 1"),
    (dict(recall_k=()), "--recall_k: give at least one k"),
])
def test_non_finite_and_out_of_range_numbers_are_refused(tmp_path, fields, message):
    with pytest.raises(flag_checks.SettingsError, match=message):
        tiny(tmp_path, **fields)


def test_recall_k_zero_from_the_command_line(tmp_path):
    from absl import flags

    values = flags.FlagValues()
    config.define_flags(values)
    values(["prog", "--data_dir=d", f"--output_dir={tmp_path}", "--preset=tiny", "--recall_k=0,5"])
    with pytest.raises(flag_checks.SettingsError, match="--recall_k=0"):  # an InputError: one line
        config.from_flags(values)


def test_a_batch_of_more_landmarks_than_the_data_holds_is_one_line(tmp_path):
    from trainer.input import records_info
    from trainer.run.loop import _checked_step

    data = make_shards(tmp_path / "data", "--classes=4", "--per_class=4")
    cfg = tiny(tmp_path, data_dir=str(data), batch_p=8, batch_k=2)
    with pytest.raises(config.ConfigError, match=r"--batch=8,2: P=8 distinct landmarks .* holds 4; lower P"):
        records_info.check_batch_fits(cfg)
    records_info.check_batch_fits(tiny(tmp_path, data_dir=str(data), batch_p=4, batch_k=2))
    records_info.check_batch_fits(tiny(tmp_path, data_dir=str(data), batch_p=8, batch_k=2, epochs=0))  # export only

    import tensorflow as tf

    def failing_step(iterator):  # what TensorFlow raises around pool_input's ValueError
        raise tf.errors.InvalidArgumentError(None, None, "ValueError: 4 pools of 1 shard(s) in a row gave no batch of "
                                             "P=8 distinct landmarks: the train split has too few landmarks per pool;"
                                             " raise --pool_shards or lower P in --batch\nTraceback (most recent ...")
    with pytest.raises(config.ConfigError, match=r"^4 pools of 1 shard\(s\) in a row gave no batch of P=8 .*--batch$"):
        _checked_step(failing_step, None)


def test_arcface_rerun_on_data_with_fewer_landmarks_is_refused_and_loses_nothing(tmp_path):
    eight = make_shards(tmp_path / "eight", "--classes=8", "--per_class=4")
    four = make_shards(tmp_path / "four", "--classes=4", "--per_class=4")
    out = tmp_path / "out"
    run_train(eight, out, "--loss=arcface", "--epochs=2", "--steps_per_epoch=1")
    assert json.loads((out / "config.json").read_text())["classes"] == 8
    before = snapshot(out)
    done = run_train(four, out, "--loss=arcface", "--epochs=3", "--steps_per_epoch=1", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stdout, done.stdout[-3000:]
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"trainer: error: {out / 'config.json'}: "), done.stdout[-3000:]
    assert "train landmarks (ArcFace classes) 8 -> 4" in errors[0] and "--overwrite" in errors[0]
    assert "starting from scratch" not in done.stdout
    assert snapshot(out) == before  # ckpt-1 and ckpt-2, history.json and the export as they were


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path):
    a_file = tmp_path / "out"
    a_file.write_text("x")
    done = subprocess.run([sys.executable, "-m", "trainer.train", f"--data_dir={tmp_path}", f"--output_dir={a_file}",
                           "--preset=tiny"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "LANDMARKS_TRACEBACK"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip() == f"trainer: error: --output_dir={a_file}: exists and is not a folder"
    assert a_file.read_text() == "x"
