"""What the trainer knows about a records folder without reading its images.

`make preprocess` writes `shard_index.json` (pipelines/shard_index.py): per shard its record count,
bytes and label counts, each split's layout, and the stored image size. From it the trainer takes
the steps per epoch, the per-landmark totals the sampler balances on, and the default image size.
Records written before that file existed (or by other tools) still train: counts are then read
from the shards (one streaming pass, said in the log), and since such shards mix landmarks at
random, a warning says positives will be weak until `make preprocess` is re-run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tensorflow as tf
from absl import logging

from pipelines import schema, shard_index
from trainer.input import shard_check
from trainer.config import Config, ConfigError


def load(data_dir: str) -> Optional[shard_index.ShardIndex]:
    """The folder's shard index, None when there is none (older records), with a warning when unreadable."""
    path = os.path.join(data_dir, shard_index.FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        return shard_index.parse(data)
    except ValueError as err:
        logging.warning("%s is unreadable (%s): treating the records as an older layout", path, err)
        return None


def whole_landmarks(index: Optional[shard_index.ShardIndex], files: list) -> bool:
    """Whether the train shards keep landmarks whole and the index describes exactly these files."""
    split = index.splits.get("train") if index else None
    return (split is not None and split.layout == shard_index.WHOLE_LANDMARKS
            and set(split.shards) == {os.path.basename(f) for f in files})


def warn_weak_positives(data_dir: str) -> None:
    logging.warning(
        "%s has no %s describing whole-landmark train shards (records from an older `make preprocess`?): "
        "a landmark's photos are spread over all shards, so a pool holds few photos of each and positives "
        "will be weak (K copies of one photo). Re-run `make preprocess` to rewrite the shards.",
        data_dir, shard_index.FILE)


def count_records(files: list, skip_corrupt: bool = False) -> int:
    """(Readable, with `skip_corrupt`) records in `files` (one streaming pass over them)."""
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        shard_check.reader(skip_corrupt), num_parallel_calls=tf.data.AUTOTUNE)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def train_records(data_dir: str, files: list, skip_corrupt: bool = False) -> int:
    """Train records: from the shard index, else counted by reading every shard (logged)."""
    index = load(data_dir)
    split = index.splits.get("train") if index else None
    if split is not None and set(split.shards) == {os.path.basename(f) for f in files}:
        return split.records
    logging.warning("no record counts for the %d train shards in %s/%s: counting by reading every shard",
                    len(files), data_dir, shard_index.FILE)
    return count_records(files, skip_corrupt)


def stored_image_size(data_dir: str, files: list) -> int:
    """The shorter side the records were stored at: from the shard index, else the first record's."""
    index = load(data_dir)
    if index is not None and index.image_size > 0:
        return index.image_size
    for serialized in tf.data.TFRecordDataset(files[:1]).take(1):
        parsed = schema.tf_parse(serialized)
        size = int(min(parsed[schema.HEIGHT], parsed[schema.WIDTH]))
        logging.warning("no stored image size in %s/%s: taking the first record's shorter side, %d px",
                        data_dir, shard_index.FILE, size)
        return size
    raise FileNotFoundError(f"the train shards in {data_dir} hold no records")


def resolve_image_size(cfg: Config) -> Config:
    """`--image_size=0` -> the stored size; a warning when training would upsample stored images."""
    stored = stored_image_size(cfg.data_dir, sorted(tf.io.gfile.glob(schema.shard_pattern(cfg.data_dir, "train"))))
    if cfg.image_size == 0:
        return dataclasses.replace(cfg, image_size=stored)
    if cfg.image_size > stored:
        logging.warning("--image_size=%d is larger than the %d px the records were stored at (shorter side): "
                        "training would upsample them; re-run `make preprocess ARGS=--image_size=%d` or train smaller",
                        cfg.image_size, stored, cfg.image_size)
    return cfg


def check_batch_fits(cfg: Config) -> None:
    """ConfigError when the shard index shows fewer train landmarks than a replica batch's P (no
    batch of P distinct landmarks could ever be planned); without label totals the training
    input finds out itself (loop.py turns its error into the same one line). `--epochs=0` plans
    no batch (it only exports), so it is never refused."""
    if cfg.epochs == 0:
        return
    index = load(cfg.data_dir)
    split = index.splits.get("train") if index else None
    totals = split.label_totals() if split else None
    if totals and len(totals) < cfg.replica_p:
        raise ConfigError(f"--batch={cfg.batch_p},{cfg.batch_k}: P={cfg.replica_p} distinct landmarks per replica "
                          f"batch, but the train split of {cfg.data_dir} holds {len(totals)}; lower P")
