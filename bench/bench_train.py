"""Training throughput against input-pipeline throughput, side by side in one run (CPU).

    python -m bench.bench_train [--sizes=128,224] [--batch=16,4] [--steps=8] [--records=768] [--photos=DIR]

Writes generated JPEG shards shaped like the preprocessing's output (shorter side 256, long-tailed
landmarks) to a temporary directory, then for each image size measures:
  input   images/s of `trainer.input.data.train_dataset` alone (read, group P x K, decode, augment);
  train   images/s of the training step (MobileNet alpha 0.25, all layers trainable, semi-hard loss)
          fed from a cached batch, so it measures what the model consumes;
and prints their ratio: the input pipeline must deliver at least 2x what the model consumes.

Then the input side at GPU rates (issue 12): `trainer.input.data.train_dataset` alone at `--input_sizes`
(224 and 299 px) on records whose shorter side is 256 (the preprocessing default) and, for 299,
also `--record_side_299` (320: records stored a little above the crop size), as images/s per core
(wall / cores) and images per CPU-second (the process's CPU over the timed batches, robust on a
shared machine), and how many cores that takes to feed one GPU at `--gpu_rate` images/s
(2,432: InceptionV3 at 299 px, PyTorch bf16 on an H200, ../shared/FIELD-NOTES.md), with the load
average before and after. `--photos=DIR` builds those records from real photos (through the
preprocessing's `process_image`) instead of generated ones, whose pixel noise makes them costlier
to decode than photos (about 4.6 against 3.2 bits per pixel for landmarks-mini at 256 px).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def photo_jpegs(directory: str, side: int, count: int) -> list:
    """(jpeg, height, width) of up to `count` photos under `directory`, through the preprocessing's
    own `process_image` (shorter side `side`, quality 90); photos it refuses, and those smaller
    than `side` (which it keeps as they are), are left out."""
    from pipelines.images.image import ImageConfig, process_image

    out = []
    names = sorted(os.path.join(root, name) for root, _, files in os.walk(directory) for name in files
                   if name.lower().endswith((".jpg", ".jpeg")))
    for name in names:
        if len(out) == count:
            break
        with open(name, "rb") as f:
            try:
                jpeg, height, width = process_image(f.read(), ImageConfig(image_size=side))
            except Exception:  # noqa: BLE001 - the preprocessing's failures (WebP named .jpg, ...): skip
                continue
        if min(height, width) == side:
            out.append((jpeg, height, width))
    if not out:
        raise FileNotFoundError(f"--photos={directory}: no JPEG photo the preprocessing accepts")
    return out


def write_shards(directory: str, records: int, shards: int, seed: int = 0, side: int = 256,
                 photos: str = "") -> None:
    """Long-tailed JPEG records (4:3, shorter side `side`, 341x256 by default) in `train-*` shards.
    `photos`: a folder of real photos, prepared by the preprocessing's `process_image` and reused
    in turn, instead of generated images (stripes plus pixel noise)."""
    import tensorflow as tf

    from pipelines import schema

    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.zipf(1.6, records), 200)  # most landmarks have a handful of images
    writers = [tf.io.TFRecordWriter(os.path.join(directory, schema.shard_name("train", i, shards)))
               for i in range(shards)]
    real = photo_jpegs(photos, side, records) if photos else []
    height, width = side, round(side * 4 / 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for n, label in enumerate(labels):
        if real:
            jpeg, height, width = real[n % len(real)]
        else:
            base = np.random.default_rng(int(label))
            colour = base.uniform(0, 255, 3)
            stripes = np.sin((xx * base.uniform(-1, 1) + yy) / base.uniform(3, 12) + rng.uniform(0, 6))
            noise = rng.normal(0, 20, (height, width, 3))
            image = np.clip(colour * (0.6 + 0.4 * stripes[..., None]) + noise, 0, 255)
            jpeg = tf.io.encode_jpeg(image.astype(np.uint8), quality=90).numpy()
        feature = {
            schema.ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"b{n}".encode()])),
            schema.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
            schema.HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
            schema.WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
            schema.LANDMARK_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            schema.SOURCE_URL: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[n % shards].write(example.SerializeToString())
    for w in writers:
        w.close()


def shard_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def images_per_second(step, batch_images: int, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_images / (time.perf_counter() - start)


def input_rates(cfg, batch_images: int, count: int, warmup: int = 3):
    """(images/s wall, images per CPU-second of this process) over `count` batches of `train_dataset`.

    The iterator is dropped afterwards, so its prefetching threads stop before the next measurement."""
    import gc

    from trainer.input import data

    batches = iter(data.train_dataset(cfg))
    for _ in range(warmup):
        next(batches)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        next(batches)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    del batches
    gc.collect()
    images = count * batch_images
    return images / wall, images / cpu


def device_augment_cost(size: int, batch: int, count: int) -> float:
    """CPU-seconds per image of `augment.on_device` (resize of the 341x256 crops, flip, brightness,
    contrast, saturation) on uint8 batches, traced once; on a GPU it costs a small fraction of this."""
    import tensorflow as tf

    from trainer.input import augment

    crops = tf.cast(tf.random.uniform([batch, 256, 341, 3], 0, 256, tf.int32), tf.uint8)
    sizes = tf.random.uniform([batch, 2], 128, 256, tf.int32)
    params = augment.batch_params(tf.constant([0, 1], tf.int64), batch)
    step = tf.function(lambda x, s, p: tf.reduce_sum(augment.on_device(x, s, p, size)), autograph=False)
    step(crops, sizes, params).numpy()
    cpu = time.process_time()
    for _ in range(count):
        step(crops, sizes, params).numpy()
    return (time.process_time() - cpu) / (count * batch)


def input_at_gpu_rates(args, p: int, k: int, cores: int) -> None:
    """The input pipeline alone at GPU image sizes, the former host path (all augmentation on the CPU)
    against the new one (crop + uint8 resize; jitter on the device), and the cores one GPU needs."""
    from trainer.config import Config

    cases = [(size, 256) for size in (int(s) for s in args.input_sizes.split(",") if s)]
    if args.record_side_299:
        cases.append((299, args.record_side_299))
    print(f"input pipeline alone (trainer.input.data.train_dataset, {args.input_batches} batches of {p}x{k} per "
          f"measurement, old and new alternating {args.rounds}x), {cores} cores, load average "
          f"{os.getloadavg()[0]:.2f}; one GPU needs "
          f"{args.gpu_rate:.0f} images/s (InceptionV3 299 px, H200 bf16):", flush=True)
    print(f"{'size':>4}  {'records':>7}  {'old img/CPU-s':>13}  {'new img/CPU-s':>13}  {'new/old':>7}  "
          f"{'old cores/GPU':>13}  {'new cores/GPU':>13}  {'new img/s wall':>14}", flush=True)
    for side in sorted({side for _, side in cases}):
        with tempfile.TemporaryDirectory() as tmp:
            write_shards(tmp, args.records, shards=4, side=side, photos=args.photos)
            shown = f"photo{side}" if args.photos else f"{round(side * 4 / 3)}x{side}"
            what = f"photos from {args.photos}, shorter side {side}" if args.photos else f"generated, {shown}"
            print(f"records ({what}): {shard_bytes(tmp) / args.records / 1024:.1f} KiB each", flush=True)
            for size in [size for size, s in cases if s == side]:
                totals = {"host": [0.0, 0.0, 0.0], "device": [0.0, 0.0, 0.0]}  # images, CPU-s, wall s
                for _ in range(args.rounds):
                    for path in ("host", "device"):
                        cfg = Config(data_dir=tmp, output_dir=tmp, backbone="mobilenet", alpha=0.25,
                                     weights="none", image_size=size, embedding_dim=64, freeze="none", batch_p=p,
                                     batch_k=k, pool_shards=4, epochs=1, steps_per_epoch=1, learning_rate=1e-4,
                                     warmup_steps=0, augment=path)
                        wall, per_cpu = input_rates(cfg, p * k, args.input_batches)
                        images = args.input_batches * p * k
                        for i, value in enumerate((images, images / per_cpu, images / wall)):
                            totals[path][i] += value
                old, new = (totals[x][0] / totals[x][1] for x in ("host", "device"))
                wall = totals["device"][0] / totals["device"][2]
                print(f"{size:>4}  {shown:<7}  {old:13.1f}  {new:13.1f}  {new / old:6.2f}x  "
                      f"{args.gpu_rate / old:13.1f}  {args.gpu_rate / new:13.1f}  {wall:14.1f}", flush=True)
    print(f"load average after the input measurements: {os.getloadavg()[0]:.2f}", flush=True)
    for size in sorted({size for size, _ in cases}):
        cost = device_augment_cost(size, p * k, max(2, args.input_batches // 4))
        print(f"on-device augmentation, timed on this CPU (not a GPU): {size} px {cost * 1e3:.3f} ms per image "
              f"({1 / cost:,.0f} images per CPU-second)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--batch", default="16,4", help="P,K")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per size")
    ap.add_argument("--input_batches", type=int, default=40, help="timed input batches per size")
    ap.add_argument("--records", type=int, default=768)
    ap.add_argument("--input_sizes", default="224,299", help="input-only sizes on 256-px records ('' to skip)")
    ap.add_argument("--record_side_299", type=int, default=320, help="also 299 px from records this tall (0: skip)")
    ap.add_argument("--gpu_rate", type=float, default=2432.0, help="images/s one GPU trains at")
    ap.add_argument("--rounds", type=int, default=2, help="old/new alternations per input size")
    ap.add_argument("--photos", default="", help="input-at-GPU-rates records from the photos in this folder "
                    "(e.g. ../shared/data/landmarks-mini/images) instead of generated images")
    ap.add_argument("--smoke", action="store_true", help="seconds: tiny sizes and counts (what the test runs)")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.batch, args.steps, args.input_batches, args.records = "64", "4,2", 1, 2, 64
        args.record_side_299, args.rounds = 0, 1

    import keras
    from absl import logging

    from trainer.input import data
    from trainer.run import distribute, loop
    from trainer.config import Config
    from trainer.network.model import build_embedding_model

    import tensorflow as tf

    # One replica: the first GPU where there is one, else the CPU.
    strategy = distribute.make_strategy(distribute.select(1 if tf.config.list_physical_devices("GPU") else 0))
    logging.set_verbosity(logging.ERROR)  # the generated shards have no shard_index.json: expected here
    p, k = (int(x) for x in args.batch.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(tmp, args.records, shards=4)
        print(f"{args.records} records of 341x256 JPEG; batch {p}x{k}={p * k}; {os.cpu_count()} CPU cores; "
              f"MobileNet alpha 0.25, all layers trainable", flush=True)
        rows = []
        for size in (int(s) for s in args.sizes.split(",") if s):
            cfg = Config(data_dir=tmp, output_dir=tmp, backbone="mobilenet", alpha=0.25, weights="none",
                         image_size=size, embedding_dim=64, freeze="none", batch_p=p, batch_k=k,
                         pool_shards=4, epochs=1, steps_per_epoch=args.steps,
                         learning_rate=1e-4, warmup_steps=0)
            input_rate, _ = input_rates(cfg, p * k, args.input_batches)

            with strategy.scope():
                model = build_embedding_model(cfg)
                optimizer = keras.optimizers.Adam(1e-4)
            cached = strategy.experimental_distribute_dataset(
                data.train_dataset(cfg).take(1).cache().repeat())
            cached_iter = iter(cached)
            step = loop.train_step_fn(strategy, model, optimizer, cfg)
            train_rate = images_per_second(lambda: float(step(cached_iter)), p * k, args.steps)
            rows.append((size, train_rate, input_rate))
            print(f"{size:>4} px  train {train_rate:8.1f} img/s   input {input_rate:8.1f} img/s   "
                  f"input/train {input_rate / train_rate:5.1f}x", flush=True)
        if rows:
            worst = min(inp / tr for _, tr, inp in rows)
            verdict = "OK" if worst >= 2 else "INPUT-BOUND"
            print(f"lowest input/train ratio {worst:.1f}x (needs >= 2x): {verdict}")
    if args.input_sizes or args.record_side_299:
        input_at_gpu_rates(args, p, k, len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
