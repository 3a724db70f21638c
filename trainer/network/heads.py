"""The training-only class head of `--loss=arcface`, and the landmark-id -> class-index mapping.

ArcFace learns one unit centre per class (or `--arcface_subcenters` of them) next to the embedding
network. The centres live here, are saved in the epoch checkpoints (so a resumed run continues with
them), and are never exported: the exported model is the plain embedding (trainer/contract.py), and
retrieval compares embeddings with each other, not with centres.

Landmark ids are sparse (Google Landmarks v2: ids up to ~200k for ~200k landmarks, with gaps), so
classes are the sorted distinct train landmark ids and a label's class is its position among them
(`tf.searchsorted`; a label absent from the list maps to -1 and is left out of the loss).
`train_landmark_ids` is the one place that finds those ids.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from pipelines import schema
from trainer.network import losses
from trainer.config import DYNAMIC, Config, ConfigError
from trainer.input.data import list_shards

STATS_FILE = "stats.json"
# A per-landmark train count in the preprocessing's stats.json, when it records one
# ({"<landmark_id>": count}); without it the ids come from one labels-only pass over the shards.
STATS_LABEL_KEYS = ("train_images_per_landmark", "images_per_landmark", "label_counts")


@functools.lru_cache(maxsize=4)  # resolve_classes and make_head both ask, once per run
def train_landmark_counts(data_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted distinct landmark ids (>= 0) of the train split (the classes of the head) and each
    one's train photo count."""
    path = os.path.join(data_dir, STATS_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            stats = json.load(f)
        for key in STATS_LABEL_KEYS:
            counts = stats.get(key)
            if isinstance(counts, dict) and counts:
                pairs = sorted((int(k), int(n)) for k, n in counts.items() if int(k) >= 0 and n)
                return (np.array([k for k, _ in pairs], np.int64).reshape(-1),
                        np.array([n for _, n in pairs], np.int64).reshape(-1))
    spec = {schema.LANDMARK_ID: tf.io.FixedLenFeature([], tf.int64)}
    ds = (tf.data.TFRecordDataset(list_shards(data_dir, "train"), num_parallel_reads=tf.data.AUTOTUNE)
          .batch(4096).map(lambda s: tf.io.parse_example(s, spec)[schema.LANDMARK_ID]))
    ids, counts = np.unique(np.concatenate([b.numpy() for b in ds] or [np.zeros(0, np.int64)]), return_counts=True)
    return ids[ids >= 0], counts[ids >= 0].astype(np.int64)


def train_landmark_ids(data_dir: str) -> np.ndarray:
    """Sorted distinct landmark ids (>= 0) of the train split: the classes of the head."""
    return train_landmark_counts(data_dir)[0]


class ArcFaceHead(keras.layers.Layer):
    """Class centres [classes * subcenters, D] and the landmark-id -> class mapping."""

    def __init__(self, landmark_ids: np.ndarray, embedding_dim: int, subcenters: int,
                 margins: Optional[np.ndarray] = None, **kwargs):
        super().__init__(name="arcface_head", dtype="float32", **kwargs)
        self.landmark_ids = tf.constant(np.asarray(landmark_ids, np.int64))
        self.subcenters = subcenters
        # --arcface_margin=dynamic: one margin per class (losses.dynamic_margins), else None
        self.margins = None if margins is None else tf.constant(np.asarray(margins, np.float32))
        self.centers = self.add_weight(
            name="centers", shape=(len(landmark_ids) * subcenters, embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=embedding_dim ** -0.5), trainable=True)

    def class_index(self, labels: tf.Tensor) -> tf.Tensor:
        """Landmark ids -> class indices, -1 for an id that is not a class."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        pos = tf.searchsorted(self.landmark_ids, labels)
        found = tf.gather(self.landmark_ids, tf.minimum(pos, tf.size(self.landmark_ids, tf.int32) - 1)) == labels
        return tf.where(found, tf.cast(pos, tf.int32), -1)


def resolve_classes(cfg: Config) -> Config:
    """`cfg` with `classes` set to the train landmarks for --loss=arcface (part of the run's shape:
    a rerun on data with another count is refused, trainer/run/run_dir.py); unchanged for triplet losses."""
    if cfg.loss != "arcface":
        return cfg
    ids = train_landmark_ids(cfg.data_dir)
    if ids.size < 2:
        raise ConfigError(f"--loss=arcface needs at least 2 train landmarks in {cfg.data_dir}, found {ids.size}")
    return dataclasses.replace(cfg, classes=int(ids.size))


def make_head(cfg: Config) -> Optional[ArcFaceHead]:
    """The head `cfg.loss` needs (create it inside the strategy's scope), or None for triplet losses."""
    if cfg.loss != "arcface":
        return None
    resolve_classes(cfg)  # refuses fewer than 2 classes
    ids, counts = train_landmark_counts(cfg.data_dir)
    margins = losses.dynamic_margins(counts) if cfg.arcface_margin == DYNAMIC else None
    return ArcFaceHead(ids, cfg.embedding_dim, cfg.arcface_subcenters, margins)


def head_variables(head: Optional[ArcFaceHead]) -> List[tf.Variable]:
    return list(head.trainable_variables) if head is not None else []


def batch_loss(cfg: Config, head: Optional[ArcFaceHead], labels: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
    """The configured loss of one replica batch: a triplet loss, or ArcFace against the head."""
    if head is None:
        return losses.LOSSES[cfg.loss](labels, embeddings, cfg.margin)
    margin = head.margins if head.margins is not None else float(cfg.arcface_margin)
    return losses.arcface_loss(head.class_index(labels), embeddings, head.centers, cfg.arcface_scale,
                               margin, cfg.arcface_subcenters)
