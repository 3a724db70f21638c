"""tf.data input: TFRecord shards (local or gs://) -> augmented P x K training batches, eval batches.

Everything streams: training reads pools of a few whole shards at a time (pool_input.py) and
plans class-balanced P x K batches from their labels (sampling.py); nothing holds the dataset in
memory. Images enter
the models as float32 [S, S, 3] in [0, 255]; each backbone's own scaling lives inside the model.
`eval_image` is the one evaluation preprocessing, shared by validation and the exported SavedModel.
"""

from __future__ import annotations

from typing import List, Optional

import tensorflow as tf

from pipelines import schema
from trainer import pool_input, records_info, sampling, shard_check
from trainer.config import Config

AUTOTUNE = tf.data.AUTOTUNE


def list_shards(data_dir: str, split: str, required: bool = True) -> List[str]:
    """Sorted shard paths of a split; a clear error when there are none (`required`), else []."""
    files = sorted(tf.io.gfile.glob(schema.shard_pattern(data_dir, split)))
    if not files and required:
        raise FileNotFoundError(f"no {split} shards match {schema.shard_pattern(data_dir, split)}")
    return files


def eval_image(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """Encoded image bytes -> float32 [size, size, 3]: decode, central square crop, resize."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    image = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)
    image = tf.image.resize(image, [size, size], antialias=True)
    image.set_shape([size, size, 3])
    return image


def train_image(encoded: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG -> augmented float32 [size, size, 3]: random resized crop, flip, light colour jitter.

    Only the crop window is decoded (`decode_and_crop_jpeg`); the records are JPEG by contract.
    """
    seeds = tf.random.experimental.stateless_split(seed, 6)
    shape = tf.io.extract_jpeg_shape(encoded)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([1, 0, 4]), seed=seeds[0], min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.25, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
    image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.image.resize(image, [size, size])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = tf.image.stateless_random_brightness(image, 0.1 * 255.0, seeds[2])
    image = tf.image.stateless_random_contrast(image, 0.85, 1.15, seeds[3])
    image = tf.image.stateless_random_saturation(image, 0.85, 1.15, seeds[4])
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([size, size, 3])
    return image


def _records(files: List[str], skip_corrupt: bool = False) -> tf.data.Dataset:
    """Serialized records of `files`, in file order (evaluation); `skip_corrupt`: each shard ends
    at its first damaged record (shard_check.py)."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        shard_check.reader(skip_corrupt), cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
        deterministic=True)


def train_dataset(cfg: Config, context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Endless (images [P*K, S, S, 3], labels [P*K]) batches for one replica, P = cfg.replica_p.

    Pools of whole shards, planned class-balanced (pool_input.py, sampling.py). Under multi-worker
    input each pipeline takes its own files when there are at least as many as pipelines, else
    every pipeline reads the same pools and keeps its share of each pool's records.
    """
    pipelines = context.num_input_pipelines if context is not None else 1
    pipeline = context.input_pipeline_id if context is not None else 0
    seed = cfg.seed * 1009 + pipeline
    files = list_shards(cfg.data_dir, "train")
    index = records_info.load(cfg.data_dir)
    if not records_info.whole_landmarks(index, files):
        records_info.warn_weak_positives(cfg.data_dir)
        index = None
    share = None
    if pipelines > 1 and len(files) >= pipelines:
        files = files[pipeline::pipelines]
    elif pipelines > 1:
        share, seed = (pipelines, pipeline), cfg.seed  # same pools everywhere, a share of each
    split = index.splits["train"] if index else None
    planner = sampling.PoolPlanner(cfg.replica_p, cfg.batch_k, cfg.landmark_sampling, seed,
                                   split.label_totals() if split else None, split.records if split else 0)
    ds = pool_input.pk_records(files, planner, cfg.pool_shards, seed, share, cfg.skip_corrupt_records)
    # One stateless seed per element keeps augmentation deterministic under a parallel map.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda pair, s: (train_image(pair[0], cfg.image_size, s), pair[1]),
        num_parallel_calls=AUTOTUNE, deterministic=True,  # keep P x K groups together
    )
    return ds.batch(cfg.replica_p * cfg.batch_k, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(data_dir: str, split: str, size: int, limit: int, batch_size: int,
                 skip_corrupt: bool = False) -> tf.data.Dataset:
    """(images [B, S, S, 3], labels [B]) for the first `limit` records of a split (0: all), in order."""
    ds = _records(list_shards(data_dir, split), skip_corrupt)
    if limit:
        ds = ds.take(limit)

    def prepare(serialized):
        parsed = schema.tf_parse(serialized)
        return eval_image(parsed[schema.ENCODED], size), parsed[schema.LANDMARK_ID]

    return ds.map(prepare, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)
