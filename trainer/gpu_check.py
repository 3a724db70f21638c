"""`make gpu-check`: is this GPU host ready to train? A short run on generated data over every GPU.

    python -m trainer.gpu_check [--steps=40] [--backbone=inception_v3] [--image_size=299] [--per_gpu_batch=16,4]

Writes a few hundred generated JPEG records (320-px, whole landmarks per shard, as `make preprocess`
writes them) into a temporary folder, then times, with the trainer's own input pipeline, model,
strategy and train step (mixed precision and XLA resolved as `make train` resolves them):
- the input pipeline alone (images/s from one host pipeline);
- training steps over every visible GPU, after the compile steps (images/s, and per GPU).
Exit 0 when every replica ran on a GPU; 1 when one did not; 2 when TensorFlow sees no GPU (with why).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from typing import Dict, Sequence, Tuple

from absl import app, flags

from pipelines.cli import cli_errors, console

flags.DEFINE_integer("steps", 40, "Timed training steps (after --warmup compile/warm-up steps).")
flags.DEFINE_integer("warmup", 5, "Steps run before timing (tracing, XLA compilation, autotuning).")
flags.DEFINE_string("backbone", "inception_v3", "Backbone to time (the trainer's default).")
flags.DEFINE_integer("image_size", 299, "Training size in pixels (the trainer's default for InceptionV3).")
flags.DEFINE_string("per_gpu_batch", "16,4", "P,K per GPU: P landmarks x K images.")
flags.DEFINE_integer("classes", 64, "Generated landmarks.")
flags.DEFINE_integer("per_class", 8, "Generated photos per landmark.")
FLAGS = flags.FLAGS

NO_GPU_EXIT = 2


def write_records(directory: str, classes: int, per_class: int, size: int = 320, shards: int = 4) -> str:
    """Generated train records (+ shard_index.json) in `directory`: landmark c is a fixed colour and
    stripe pattern with noise, each landmark whole in one shard."""
    import numpy as np
    import tensorflow as tf

    from pipelines import schema, shard_index

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rows = []
    for s in range(shards):
        name = schema.shard_name("train", s, shards)
        labels: Dict[str, int] = {}
        path = os.path.join(directory, name)
        with tf.io.TFRecordWriter(path) as writer:
            for c in range(s, classes, shards):
                fg, bg, angle = rng.integers(0, 256, 3), rng.integers(0, 256, 3), rng.uniform(0, np.pi)
                for i in range(per_class):
                    phase = (xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, 16)) / 16
                    img = np.where((np.sin(2 * np.pi * phase) > 0)[..., None], fg, bg) + rng.normal(0, 12, (size, size, 3))
                    jpeg = tf.io.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=90).numpy()
                    image_id = f"gpu-check-{c:03d}-{i:03d}"
                    writer.write(schema.tf_serialize(schema.ImageRecord(image_id, jpeg, size, size, c, f"gen://{image_id}")))
                labels[str(c)] = per_class
        rows.append(("train", shard_index.WHOLE_LANDMARKS, name, len(labels) * per_class, os.path.getsize(path), labels))
    with open(os.path.join(directory, shard_index.FILE), "wb") as f:
        f.write(shard_index.build(size, rows))
    return directory


def off_gpu(device_names: Sequence[str]) -> Tuple[str, ...]:
    """The replica devices that are not GPUs (what makes the check fail)."""
    return tuple(d for d in device_names if "GPU" not in d.upper().rsplit("/", 1)[-1])


def input_rate(cfg, batches: int) -> float:
    """Images/s of one host input pipeline (data.train_dataset), after its first batch."""
    from trainer.input import data

    it = iter(data.train_dataset(cfg))
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.replica_p * cfg.batch_k / (time.perf_counter() - start)


def train_rate(cfg, strategy, steps: int, warmup: int) -> Dict:
    """Training images/s over the strategy's replicas, timed after `warmup` steps; the replica devices."""
    from trainer.run import loop

    with strategy.scope():
        model, optimizer, head = loop.training_parts(cfg, 1e-4)
    iterator = loop.distributed_input(strategy, cfg)
    step = loop.FirstStepFallback(strategy, model, optimizer, cfg, head, chief=True)
    for _ in range(warmup):
        float(step(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(iterator)
    float(loss)  # waits for the last step
    seconds = time.perf_counter() - start
    images = steps * cfg.batch_p * cfg.batch_k
    return {"images_per_s": images / seconds, "seconds": seconds, "jit": step.jit,
            "replica_devices": tuple(strategy.extended.worker_devices),
            "variable_devices": tuple(v.device for v in getattr(model.trainable_variables[0], "values", ()))}


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    console.setup(FLAGS.verbosity, tensorflow=True)
    import keras
    import tensorflow as tf

    from trainer import config
    from trainer.run import distribute

    seen = tf.config.list_physical_devices("GPU")
    if not seen:
        print(f"gpu-check: needs a GPU, but TensorFlow sees none "
              f"({distribute.no_gpu_reason(tf.test.is_built_with_cuda(), 0)})", file=sys.stderr)
        return NO_GPU_EXIT
    devices = distribute.select(0)
    p, k = (int(x) for x in FLAGS.per_gpu_batch.split(","))
    work = tempfile.mkdtemp(prefix="gpu-check-")
    cfg = config.Config(data_dir=write_records(work, FLAGS.classes, FLAGS.per_class), output_dir=work,
                        backbone=FLAGS.backbone, weights="none", image_size=FLAGS.image_size,
                        batch_p=p * devices.replicas, batch_k=k, warmup_steps=0)
    cfg = distribute.resolve(cfg, devices)
    if cfg.mixed_precision == "on":
        keras.mixed_precision.set_global_policy("mixed_float16")
    print(devices.log_line(cfg.mixed_precision == "on", cfg.jit_compile == "on"), flush=True)
    strategy = distribute.make_strategy(devices)
    host = input_rate(dataclasses.replace(cfg, replicas=1), batches=20)
    run = train_rate(cfg, strategy, FLAGS.steps, FLAGS.warmup)
    per_gpu = run["images_per_s"] / devices.replicas
    print(f"{cfg.backbone} at {cfg.image_size} px, batch {cfg.batch_p}x{cfg.batch_k} "
          f"({cfg.replica_p}x{cfg.batch_k} per GPU), dtype policy {keras.mixed_precision.global_policy().name}, "
          f"XLA {'on' if run['jit'] else 'off'}:")
    print(f"  training: {run['images_per_s']:,.0f} images/s = {per_gpu:,.0f} per GPU x {devices.replicas} GPU(s) "
          f"({FLAGS.steps} steps in {run['seconds']:.1f} s)")
    print(f"  input pipeline: {host:,.0f} images/s from one host pipeline "
          f"({host / max(per_gpu, 1e-9):.2f}x one GPU's training rate)")
    bad = off_gpu(run["replica_devices"]) + off_gpu(run["variable_devices"])
    if bad:
        print(f"gpu-check: FAILED: replicas or variables not on a GPU: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"gpu-check: OK: every replica on a GPU ({', '.join(run['replica_devices'])})")
    return 0


if __name__ == "__main__":
    app.run(cli_errors.absl_main("gpu-check", main))
