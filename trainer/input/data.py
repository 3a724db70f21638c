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
from trainer import data_service
from trainer.input import augment, pool_input, records_info, sampling, shard_check
from trainer.config import Config

AUTOTUNE = tf.data.AUTOTUNE


def list_shards(data_dir: str, split: str, required: bool = True) -> List[str]:
    """Sorted shard paths of a split; a clear error when there are none (`required`), else []."""
    files = sorted(tf.io.gfile.glob(schema.shard_pattern(data_dir, split)))
    if not files and required:
        raise FileNotFoundError(f"no {split} shards match {schema.shard_pattern(data_dir, split)}")
    return files


def eval_image(encoded: tf.Tensor, size) -> tf.Tensor:
    """Encoded image bytes -> float32 [size, size, 3]: decode, central square crop, resize. `size`: a
    Python int (a static shape), or an int32 scalar tensor (the export's `serving_sized`)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    image = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)
    image = tf.image.resize(image, [size, size], antialias=True)
    image.set_shape([size, size, 3] if isinstance(size, int) else [None, None, 3])
    return image


def _records(files: List[str], skip_corrupt: bool = False) -> tf.data.Dataset:
    """Serialized records of `files`, in file order (evaluation); `skip_corrupt`: each shard ends
    at its first damaged record (shard_check.py)."""
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        shard_check.reader(skip_corrupt), cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
        deterministic=True)


def train_dataset(cfg: Config, context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Endless P x K batches for one replica, P = cfg.replica_p. `--augment=device`: (uint8 crops padded
    into [P*K, H, W, 3], labels [P*K], crop sizes [P*K, 2], jitter parameters [P*K, 4]) for
    `training_images` in the training step; `--augment=host`: (float32 augmented images
    [P*K, S, S, 3], labels).

    Pools of whole shards, planned class-balanced (pool_input.py, sampling.py). Under multi-worker
    input each pipeline takes its own files when there are at least as many as pipelines, else
    every pipeline reads the same pools and keeps its share of each pool's records. With
    `--data_service`, tf.data service workers run all of it and send whole batches (data_service.py).
    """
    if cfg.data_service:  # a one-line error, not endless retries, when no dispatcher answers
        data_service.wait_for_dispatcher(cfg.data_service, cfg.data_service_timeout)
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
    ds = pool_input.pk_records(files, planner, cfg.pool_shards, seed, share, cfg.skip_corrupt_records,
                               salt=bool(cfg.data_service))
    size, batch = cfg.image_size, cfg.replica_p * cfg.batch_k
    if cfg.augment == "host":
        ds = ds.map(lambda encoded, label, s: (augment.host_train_image(encoded, size, s), label),
                    num_parallel_calls=AUTOTUNE, deterministic=True)  # deterministic: keeps P x K groups together
        ds = ds.batch(batch, drop_remainder=True)
    else:
        def crop(encoded, label, s):
            image = augment.host_crop(encoded, s)
            return image, label, tf.shape(image)[:2], s

        ds = ds.map(crop, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.padded_batch(batch, padded_shapes=([None, None, 3], [], [2], [2]), drop_remainder=True)
        ds = ds.map(lambda images, labels, sizes, seeds: (images, labels, sizes, augment.batch_params(seeds[0], batch)))
    if cfg.data_service:
        ds = data_service.distribute(ds, cfg.data_service)
    return ds.prefetch(AUTOTUNE)


def training_images(batch, size: int) -> tf.Tensor:
    """The model's float32 input from one `train_dataset` batch: with `--augment=device` its crops
    resized to `size`, flipped and jittered, batched (augment.on_device)."""
    return augment.on_device(batch[0], batch[2], batch[3], size) if len(batch) == 4 else batch[0]


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
