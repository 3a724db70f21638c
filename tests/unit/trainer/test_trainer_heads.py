"""The ArcFace class head: sparse landmark ids -> classes, where the ids come from, and training with
it end to end (two replicas, resume, an export without the head)."""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf

from tests.unit.trainer.trainer_helpers import run_train
from trainer import contract
from trainer.network import heads


def test_sparse_landmark_ids_map_to_contiguous_classes():
    head = heads.ArcFaceHead(np.array([3, 17, 200000]), embedding_dim=4, subcenters=2)
    assert head.centers.shape == (6, 4)
    got = head.class_index(tf.constant([200000, 3, 17, 5, -1, 300000], tf.int64)).numpy().tolist()
    assert got == [2, 0, 1, -1, -1, -1]


def test_landmark_ids_from_stats_json_else_from_the_labels(tmp_path, small_shards):
    assert heads.train_landmark_ids(str(small_shards)).tolist() == [0, 1, 2, 3, 4, 5]  # labels-only pass
    ids, counts = heads.train_landmark_counts(str(small_shards))
    assert ids.tolist() == [0, 1, 2, 3, 4, 5] and counts.tolist() == [6] * 6
    (tmp_path / "stats.json").write_text(json.dumps({"images_per_landmark": {"42": 3, "7": 1, "-1": 4}}))
    assert heads.train_landmark_ids(str(tmp_path)).tolist() == [7, 42]
    assert heads.train_landmark_counts(str(tmp_path))[1].tolist() == [1, 3]


def test_arcface_trains_on_two_replicas_resumes_and_exports_the_plain_embedding(tmp_path, small_shards):
    out = tmp_path / "out"
    flags = ("--loss=arcface", "--arcface_subcenters=2", "--arcface_margin=dynamic", "--cpu_replicas=2",
             "--steps_per_epoch=2")
    done = run_train(small_shards, out, *flags, "--epochs=1")
    assert "2 replica(s)" in done.stdout
    assert json.loads((out / "config.json").read_text())["arcface_margin"] == "dynamic"
    reader = tf.train.load_checkpoint(str(out / "checkpoints"))
    centers = [k for k in reader.get_variable_to_shape_map() if k.startswith("head/") and "OPTIMIZER" not in k]
    assert [reader.get_variable_to_shape_map()[k] for k in centers] == [[12, 16]]  # 6 classes x 2, dim 16

    done = run_train(small_shards, out, *flags, "--epochs=2")
    assert "after epoch 1" in done.stdout
    rows = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [0, 1, 2] and all(np.isfinite(r["loss"]) for r in rows[1:])

    exported = keras.models.load_model(out / contract.EXPORT_DIR / contract.KERAS_FILE)
    assert exported.output_shape == (None, 16)
    assert not any("arcface" in w.path or "centers" in w.path for w in exported.weights)
    assert json.loads((out / contract.EXPORT_DIR / contract.EXPORT_INFO).read_text())["epochs_trained"] == 2
