"""`python -m trainer.train` end to end, in subprocesses: multi-replica training and export,
`--epochs=0`, kill-and-resume with a corrupt checkpoint, and that training improves retrieval."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time

import numpy as np
import tensorflow as tf

from pipelines import schema
from tests.unit.trainer.trainer_helpers import REPO, make_shards, run_train, train_command
from trainer import contract


def _val_jpegs(data_dir, n: int) -> list:
    ds = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(schema.shard_pattern(str(data_dir), "val"))))
    return [schema.tf_parse(r)[schema.ENCODED] for r in ds.take(n)]


def _history(out) -> list:
    return json.loads((out / "history.json").read_text())


def test_two_replicas_train_and_export_embeds_jpeg_bytes(tmp_path, small_shards):
    out = tmp_path / "out"
    done = run_train(small_shards, out, "--cpu_replicas=2", "--epochs=1", "--steps_per_epoch=2")
    assert "2 replica(s)" in done.stdout
    assert "devices: the CPU (2 replica(s): /cpu:0, /cpu:1); no GPU used: --cpu_replicas=2" in done.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["cpu_replicas"] == 2 and config["replicas"] == 2 and config["preset"] == "tiny"
    assert config["steps_per_epoch"] == 2 and config["mixed_precision"] == "off" and config["jit_compile"] == "off"
    rows = _history(out)
    assert [r["epoch"] for r in rows] == [0, 1] and math.isfinite(rows[1]["loss"])
    ran_on = {"kind": "CPU", "count": 2, "names": ["/cpu:0", "/cpu:1"], "models": [], "compute_capability": None,
              "cuda_build": False, "dtype_policy": "float32", "jit_compile": False}
    assert all(r["devices"] == ran_on for r in rows)

    export = out / contract.EXPORT_DIR
    info = json.loads((export / contract.EXPORT_INFO).read_text())
    assert info == {"embedding_dim": 16, "image_size": 64, "backbone": "mobilenet", "weights": "none",
                    "epochs_trained": 1, "trained_on": ran_on, "contract_version": contract.CONTRACT_VERSION}
    serve = tf.saved_model.load(str(export / contract.SAVED_MODEL_DIR)).signatures[contract.SIGNATURE]
    jpegs = _val_jpegs(small_shards, 5)
    emb = serve(**{contract.INPUT_KEY: tf.stack(jpegs)})[contract.OUTPUT_KEY].numpy()
    assert emb.shape == (5, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    import keras

    from trainer.input import data

    keras_model = keras.models.load_model(export / contract.KERAS_FILE)
    images = tf.stack([data.eval_image(j, 64) for j in jpegs])
    np.testing.assert_allclose(keras_model(images).numpy(), emb, atol=1e-5)


def test_records_of_the_older_layout_train_with_counts_read_and_a_warning(tmp_path):
    # Round-robin shards without shard_index.json, as an older `make preprocess` left them.
    data = make_shards(tmp_path / "data", "--classes=6", "--per_class=6", "--layout=hashed")
    out = tmp_path / "out"
    done = run_train(data, out, "--cpu_replicas=2", "--epochs=1", "--steps_per_epoch=0", "--image_size=0")
    assert "counting by reading every shard" in done.stdout and "4 steps/epoch" in done.stdout  # 36 // (4 x 2)
    assert "positives will be weak" in done.stdout and "Re-run `make preprocess`" in done.stdout
    assert json.loads((out / "config.json").read_text())["image_size"] == 64  # the first record's shorter side


def test_zero_epochs_exports_the_untrained_network(tmp_path, small_shards):
    out = tmp_path / "out"
    run_train(small_shards, out, "--epochs=0")
    assert json.loads((out / contract.EXPORT_DIR / contract.EXPORT_INFO).read_text())["epochs_trained"] == 0
    assert [r["epoch"] for r in _history(out)] == [0]
    assert not list((out / "checkpoints").glob("ckpt-*"))


def test_records_without_val_train_and_export_with_validation_skipped(tmp_path):
    # As `make preprocess --val_fraction=0` leaves them: train shards and shard_index.json, no val-*.
    data = make_shards(tmp_path / "data", "--classes=6", "--per_class=6", "--val_per_class=0")
    assert not list(data.glob("val-*")) and list(data.glob("train-*"))
    for epochs in (1, 0):  # a trained export and the pretrained-only one
        out = tmp_path / f"out{epochs}"
        done = run_train(data, out, f"--epochs={epochs}", "--steps_per_epoch=2")
        assert done.stdout.count("validation skipped") == 1, done.stdout[-2000:]
        info = json.loads((out / contract.EXPORT_DIR / contract.EXPORT_INFO).read_text())
        assert info["epochs_trained"] == epochs
        rows = _history(out)
        assert [r["epoch"] for r in rows] == list(range(epochs + 1))
        assert not any("top1" in r for r in rows)
    trained = _history(tmp_path / "out1")[1]
    assert math.isfinite(trained["loss"]) and trained["loss"] > 0 and "learning_rate" in trained


def _wait_for_checkpoint(proc: subprocess.Popen, state_file, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state_file.exists() and "ckpt-1" in state_file.read_text():
            return
        assert proc.poll() is None, "the trainer exited before its first checkpoint"
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_killed_run_resumes_and_a_corrupt_checkpoint_falls_back(tmp_path, small_shards):
    out = tmp_path / "out"
    args = ("--epochs=3", "--steps_per_epoch=8")
    proc = subprocess.Popen(train_command(small_shards, out, *args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        _wait_for_checkpoint(proc, out / "checkpoints" / "checkpoint")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_after = max(int(p.name.split("-")[1].split(".")[0]) for p in (out / "checkpoints").glob("ckpt-*.index"))
    assert killed_after < 3, "the run finished before it could be killed"
    assert not (out / contract.EXPORT_DIR).exists()

    done = run_train(small_shards, out, *args)
    assert f"after epoch {killed_after}" in done.stdout
    started = [int(e) for e in re.findall(r"^Epoch (\d+)/3", done.stdout, re.M)]
    assert started == list(range(killed_after + 1, 4)), done.stdout[-3000:]
    assert [r["epoch"] for r in _history(out)] == [0, 1, 2, 3]
    assert json.loads((out / contract.EXPORT_DIR / contract.EXPORT_INFO).read_text())["epochs_trained"] == 3

    data_file = next((out / "checkpoints").glob("ckpt-3.data-*"))
    data_file.write_bytes(b"\0" * 64)
    done = run_train(small_shards, out, "--epochs=4", "--steps_per_epoch=8")
    assert re.search(r"checkpoint \S+ckpt-3 is unreadable", done.stdout), done.stdout[-3000:]
    assert re.search(r"resumed from \S+ckpt-2 after epoch 2", done.stdout)
    assert re.findall(r"^Epoch (\d+)/4", done.stdout, re.M) == ["3", "4"]
    assert [r["epoch"] for r in _history(out)] == [0, 1, 2, 3, 4]


def test_training_improves_retrieval_over_the_untrained_network(tmp_path, mobilenet_weights):
    # 40 colour/stripe landmarks at 40 px: ImageNet features alone confuse similar colours
    shards = make_shards(tmp_path / "data", "--classes=40", "--per_class=6", "--val_per_class=2", "--size=40")
    out = tmp_path / "out"
    run_train(shards, out, f"--weights={mobilenet_weights}", "--image_size=40", "--batch=8,4", "--epochs=3",
              "--steps_per_epoch=15", "--val_queries=0", "--val_references=0")
    rows = _history(out)
    untrained, trained = rows[0]["top1"], rows[-1]["top1"]
    assert rows[0]["queries"] == 80
    assert trained >= untrained + 0.1, rows
