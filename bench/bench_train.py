"""Training throughput against input-pipeline throughput, side by side in one run (CPU).

    python -m bench.bench_train [--sizes=128,224] [--batch=16,4] [--steps=8] [--records=768]

Writes generated JPEG shards shaped like the preprocessing's output (shorter side 256, long-tailed
landmarks) to a temporary directory, then for each image size measures:
  input   images/s of `trainer.data.train_dataset` alone (read, group P x K, decode, augment);
  train   images/s of the training step (MobileNet alpha 0.25, all layers trainable, semi-hard loss)
          fed from a cached batch, so it measures what the model consumes;
and prints their ratio: the input pipeline must deliver at least 2x what the model consumes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def write_shards(directory: str, records: int, shards: int, seed: int = 0) -> None:
    """Long-tailed JPEG records (341x256) in `train-*` and a few `val-*` shards, via TensorFlow."""
    import tensorflow as tf

    from pipelines import schema

    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.zipf(1.6, records), 200)  # most landmarks have a handful of images
    writers = [tf.io.TFRecordWriter(os.path.join(directory, schema.shard_name("train", i, shards)))
               for i in range(shards)]
    yy, xx = np.mgrid[0:256, 0:341].astype(np.float32)
    for n, label in enumerate(labels):
        base = np.random.default_rng(int(label))
        colour = base.uniform(0, 255, 3)
        stripes = np.sin((xx * base.uniform(-1, 1) + yy) / base.uniform(3, 12) + rng.uniform(0, 6))
        image = np.clip(colour * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 20, (256, 341, 3)), 0, 255)
        jpeg = tf.io.encode_jpeg(image.astype(np.uint8), quality=90).numpy()
        feature = {
            schema.ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"b{n}".encode()])),
            schema.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
            schema.HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[256])),
            schema.WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[341])),
            schema.LANDMARK_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            schema.SOURCE_URL: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[n % shards].write(example.SerializeToString())
    for w in writers:
        w.close()


def images_per_second(step, batch_images: int, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_images / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--batch", default="16,4", help="P,K")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per size")
    ap.add_argument("--input_batches", type=int, default=40, help="timed input batches per size")
    ap.add_argument("--records", type=int, default=768)
    args = ap.parse_args()

    import keras

    from trainer import data, distribute, loop
    from trainer.config import Config
    from trainer.model import build_embedding_model

    strategy = distribute.make_strategy(1)
    p, k = (int(x) for x in args.batch.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(tmp, args.records, shards=4)
        print(f"{args.records} records of 341x256 JPEG; batch {p}x{k}={p * k}; {os.cpu_count()} CPU cores; "
              f"MobileNet alpha 0.25, all layers trainable", flush=True)
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            cfg = Config(data_dir=tmp, output_dir=tmp, backbone="mobilenet", alpha=0.25, weights="none",
                         image_size=size, embedding_dim=64, freeze="none", batch_p=p, batch_k=k,
                         pool_shards=4, epochs=1, steps_per_epoch=args.steps,
                         learning_rate=1e-4, warmup_steps=0)
            batches = iter(data.train_dataset(cfg))
            input_rate = images_per_second(lambda: next(batches), p * k, args.input_batches)

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
        worst = min(inp / tr for _, tr, inp in rows)
        verdict = "OK" if worst >= 2 else "INPUT-BOUND"
        print(f"lowest input/train ratio {worst:.1f}x (needs >= 2x): {verdict}")


if __name__ == "__main__":
    main()
