"""The learning check: the former window sampler and the pool sampler, same steps, at GLD's window ratio.

    python -m bench.bench_learning --data=SYNTH --work=DIR [--steps=..] [--weights=no-top.h5]

SYNTH is a `pipelines.synthetic` folder (generated with `--size` when absent). Both runs train the
same network from the same weights for the same steps on the same `make preprocess` records; only
the batches differ:

- old: the trainer's former input (kept here only for this comparison): shuffled records cut into
  windows, with the window shrunk so that window / train records is GLD's 4,096 / 1.2M (never below
  one batch), groups of K topped up with repeats;
- new: `trainer.input.data.train_dataset` (pools of whole shards, K distinct photos, `sqrt` policy).

Each model is then indexed (its train references), asked for the synthetic test set and scored
(`indexer.build`, `indexer.predict`, `indexer.evaluate`): top-1 of the neighbour vote and GAP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

GLD_WINDOW_RATIO = 4096 / 1_200_000


def _run(args: List[str], log: str) -> None:
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"{' '.join(args[:1])} failed ({rc}); see {log}")


def old_train_dataset(cfg, context=None, window: int = 0):
    """The former training input: shuffled records, windows of `window`, the window planner."""
    import numpy as np
    import tensorflow as tf

    from bench.bench_sampler import old_plan_batches
    from pipelines import schema
    from trainer.input import augment, data

    seed = cfg.seed * 1009
    files = data.list_shards(cfg.data_dir, "train")
    records = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed).repeat()
    records = records.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), deterministic=False)
    records = records.shuffle(2 * window, seed=seed)
    rng = np.random.default_rng(seed)
    p, k = cfg.replica_p, cfg.batch_k

    def plan(labels):
        return old_plan_batches(labels, p, k, rng).reshape(-1)

    def expand(parsed):
        idx = tf.reshape(tf.numpy_function(plan, [parsed[schema.LANDMARK_ID]], tf.int64, stateful=True), [-1])
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(parsed[schema.ENCODED], idx), tf.gather(parsed[schema.LANDMARK_ID], idx)))

    ds = records.batch(window, drop_remainder=True).map(schema.tf_parse).flat_map(expand)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(lambda pair, s: (augment.host_train_image(pair[0], cfg.image_size, s), pair[1]),
                                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(p * k, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def child(args) -> None:
    """Train one model in this process (one sampler) and export it."""
    import functools

    import keras

    from trainer.input import data
    from trainer.run import distribute, export, loop
    from trainer.config import Config

    strategy = distribute.make_strategy(1)
    keras.utils.set_random_seed(args.seed)
    p, k = (int(x) for x in args.batch.split(","))
    cfg = Config(data_dir=args.records, output_dir=args.out, backbone="mobilenet", alpha=0.25,
                 weights=args.weights or "none", image_size=args.image_size, embedding_dim=64, freeze="none",
                 bn_momentum=0.9, batch_p=p, batch_k=k, epochs=1, steps_per_epoch=args.steps,
                 learning_rate=args.learning_rate, warmup_steps=args.steps // 10, val_queries=200,
                 val_references=1000, recall_k=(1,), checkpoints_to_keep=2, seed=args.seed)
    if args.child == "old":
        data.train_dataset = functools.partial(old_train_dataset, window=args.window)
    model, done = loop.train(cfg, strategy)
    export.export(model, cfg, args.out, done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="pipelines.synthetic folder (generated when absent)")
    ap.add_argument("--work", required=True, help="folder for records, models, indexes, predictions")
    ap.add_argument("--size", default="large", help="synthetic --size when generating")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", default="8,4", help="P,K")
    ap.add_argument("--image_size", type=int, default=96)
    ap.add_argument("--rows_per_shard", type=int, default=250, help="make preprocess --rows_per_shard")
    ap.add_argument("--learning_rate", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0, help="sampling, augmentation and initialisation seed")
    ap.add_argument("--weights", default="", help="no-top MobileNet 0.25 weights file (none: random init)")
    ap.add_argument("--child", choices=("old", "new"), help=argparse.SUPPRESS)
    ap.add_argument("--records", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    t0 = time.perf_counter()
    os.makedirs(args.work, exist_ok=True)
    if not os.path.isfile(os.path.join(args.data, "synthetic.json")):
        _run(["pipelines.synthetic", f"--output_dir={args.data}", f"--size={args.size}"], f"{args.work}/synthetic.log")
    records = f"{args.work}/records"
    if not os.path.isfile(f"{records}/stats.json"):
        _run(["pipelines.preprocess", f"--csv={args.data}/train.csv", f"--output_dir={records}",
              f"--image_size={args.image_size}", f"--rows_per_shard={args.rows_per_shard}"], f"{args.work}/preprocess.log")
    with open(f"{records}/stats.json") as f:
        train = json.load(f)["written_by_split"]["train"]
    p, k = (int(x) for x in args.batch.split(","))
    window = max(p * k, round(train * GLD_WINDOW_RATIO))
    print(f"{train} train records; old window {window} records (window / train = {window / train:.2%}, "
          f"GLD {GLD_WINDOW_RATIO:.2%}); {args.steps} steps of {p} x {k}", flush=True)
    results: Dict[str, Dict] = {}
    for sampler in ("old", "new"):
        out = f"{args.work}/{sampler}"
        t = time.perf_counter()
        _run(["bench.bench_learning", f"--child={sampler}", f"--records={records}", f"--out={out}",
              f"--steps={args.steps}", f"--batch={args.batch}", f"--image_size={args.image_size}",
              f"--learning_rate={args.learning_rate}", f"--weights={args.weights}", f"--window={window}",
              f"--seed={args.seed}", f"--data={args.data}", f"--work={args.work}"], f"{out}.train.log")
        _run(["indexer.build", f"--model={out}/export", f"--data_dir={records}", f"--output_dir={out}/index"],
             f"{out}.index.log")
        _run(["indexer.predict", f"--index_dir={out}/index", f"--test_csv={args.data}/test.csv",
              f"--output_dir={out}/predict"], f"{out}.predict.log")
        _run(["indexer.evaluate", f"--submission={out}/predict/submission.csv",
              f"--solution={args.data}/test_solution.csv", f"--neighbours={out}/predict/neighbours.csv",
              f"--output_dir={out}/eval"], f"{out}.evaluate.log")
        with open(f"{out}/eval/metrics.json") as f:
            results[sampler] = json.load(f)
        with open(f"{out}/history.json") as f:
            results[sampler]["val_top1"] = json.load(f)[-1].get("top1")
        print(f"{sampler}: top-1 {results[sampler]['top1']:.3f}, GAP {results[sampler]['gap']:.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    print("\n| sampler | test top-1 | test GAP | val top-1 (train references) |\n| --- | --- | --- | --- |")
    for sampler, label in (("old", f"old: windows of {window}"), ("new", "new: pools of whole shards, sqrt")):
        r = results[sampler]
        print(f"| {label} | {r['top1']:.3f} | {r['gap']:.3f} | {r['val_top1']:.3f} |")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
