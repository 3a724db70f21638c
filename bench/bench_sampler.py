"""`make bench-sampler`: the old window sampler and the pool sampler side by side at GLD-2018 shape.

Labels only (no images, no TensorFlow): 14,951 landmarks on a long tail like Google Landmarks 2018
(head 50,000 photos, median 16, thousands with fewer than 4; about 1.2M photos), one epoch of
P x K = 32 x 4 batches (train records // 128 steps) for each sampler:

- old: what the trainer did before whole-landmark shards (kept here only for this comparison):
  the shuffled record stream (an ideal shuffle here, which flatters it) cut into windows of
  4,096 records, each landmark's photos in a window grouped by K and topped up with repeats;
- new: `make preprocess`'s shard plan (`pipelines.graph.shards.plan_landmarks`, 2,000 rows per shard),
  pools of `--pool_shards` whole shards, `trainer.input.sampling.PoolPlanner` under each policy.

It prints, per sampler, the issue's three targets: share of K-groups with 2+ distinct photos
(over landmarks with 2+ photos; target >= 99%), mean distinct photos per group (landmarks with 4+;
target >= 3.9 of K = 4), share of landmarks with 2+ photos that get a real positive pair within
the epoch (target >= 95%), and the records held in memory.

`--smoke`: the same on 300 landmarks in shards of 200 rows, in about a second (`bench.smoke`).
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, Iterator, List

import numpy as np
from absl import app, flags

from bench import smoke
from pipelines.graph import shards
from trainer.config import Config
from trainer.input.sampling import POLICIES, PoolPlanner

FLAGS = flags.FLAGS
flags.DEFINE_integer("landmarks", 14951, "landmarks (GLD-2018: 14,951)")
flags.DEFINE_integer("head", 50000, "photos of the largest landmark")
flags.DEFINE_integer("median", 16, "median photos per landmark")
flags.DEFINE_float("sigma", 1.79, "log-normal spread of the tail (1.79: ~1.2M photos, ~22% of landmarks under 4)")
flags.DEFINE_integer("p", 32, "landmarks per batch")
flags.DEFINE_integer("k", 4, "photos per landmark")
flags.DEFINE_integer("window", 4096, "old sampler: records grouped at once")
flags.DEFINE_integer("shuffle_buffer", 8192, "old sampler: records shuffled before grouping (memory only)")
flags.DEFINE_integer("rows_per_shard", 2000, "new: make preprocess's --rows_per_shard")
flags.DEFINE_integer("pool_shards", 4, "new: whole shards per pool")
flags.DEFINE_float("kb_per_record", 35.0, "KB per stored record, for the MB column (256 px JPEG q90: 30-40 KB)")
flags.DEFINE_integer("seed", 0, "")
smoke.define_absl_flag()
SMOKE = {"landmarks": 300, "head": 2000, "median": 8, "rows_per_shard": 200, "window": 512, "shuffle_buffer": 1024}


def gld_sizes(landmarks: int, head: int, median: int, sigma: float) -> np.ndarray:
    """Photos per landmark: log-normal quantiles around `median`, the largest set to `head`."""
    normal = statistics.NormalDist(np.log(median), sigma)
    sizes = np.array([round(np.exp(normal.inv_cdf((i + 0.5) / landmarks))) for i in range(landmarks)])
    sizes = np.maximum(sizes, 1)
    sizes[-1] = head
    return sizes


def old_plan_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The trainer's former window planner (trainer/input/sampling.py before whole-landmark shards)."""
    labels = np.asarray(labels).reshape(-1)
    usable = np.flatnonzero(labels >= 0)
    usable = usable[rng.permutation(usable.size)]
    by_label: Dict[int, List[int]] = {}
    for i in usable:
        by_label.setdefault(int(labels[i]), []).append(int(i))
    groups = []
    for label, idx in by_label.items():
        count = -(-len(idx) // k)
        padded = idx + list(rng.choice(idx, count * k - len(idx)))
        groups += [(label, padded[g * k : (g + 1) * k]) for g in range(count)]
    order = rng.permutation(len(groups))
    open_batches: List[List] = []
    batches: List[List[int]] = []
    for g in order:
        label, idx = groups[g]
        home = next((b for b in open_batches if all(label != lb for lb, _ in b)), None)
        if home is None:
            home = []
            open_batches.append(home)
        home.append((label, idx))
        if len(home) == p:
            open_batches.remove(home)
            batches.append([i for _, ix in home for i in ix])
    return np.asarray(batches, dtype=np.int64).reshape(-1, p * k)


def old_epoch(photo_labels: np.ndarray, steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Batches of photo ids [P*K] from windows of the shuffled stream, until `steps`."""
    done = 0
    while True:
        stream = rng.permutation(photo_labels.size)
        for start in range(0, stream.size - FLAGS.window + 1, FLAGS.window):
            ids = stream[start : start + FLAGS.window]
            for batch in old_plan_batches(photo_labels[ids], FLAGS.p, FLAGS.k, rng):
                yield ids[batch]
                done += 1
                if done == steps:
                    return


def shard_photos(sizes: np.ndarray) -> List[np.ndarray]:
    """Photo ids per shard under make preprocess's whole-landmark plan (photo ids grouped by landmark)."""
    plan = shards.plan_landmarks({lb: int(n) for lb, n in enumerate(sizes)}, 0, FLAGS.rows_per_shard)
    first = np.concatenate([[0], np.cumsum(sizes)])
    out: List[List[np.ndarray]] = [[] for _ in range(plan.count)]
    for label, parts in plan.pieces.items():
        start = first[label]
        for shard, n in parts:
            out[shard].append(np.arange(start, start + n))
            start += n
    return [np.concatenate(x) if x else np.zeros(0, np.int64) for x in out]


def new_epoch(photo_labels: np.ndarray, per_shard: List[np.ndarray], policy: str, steps: int,
              rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Batches of photo ids [P*K] from pools of whole shards, until `steps`."""
    sizes = np.bincount(photo_labels)
    planner = PoolPlanner(FLAGS.p, FLAGS.k, policy, FLAGS.seed, {lb: int(n) for lb, n in enumerate(sizes)},
                          photo_labels.size)
    done = 0
    while True:
        order = rng.permutation(len(per_shard))
        for start in range(0, len(order), FLAGS.pool_shards):
            ids = np.concatenate([per_shard[s] for s in order[start : start + FLAGS.pool_shards]])
            for batch in planner.plan(photo_labels[ids]):
                yield ids[batch]
                done += 1
                if done == steps:
                    return


def measure(batches: Iterator[np.ndarray], photo_labels: np.ndarray) -> Dict[str, float]:
    """The issue's three metrics over one epoch of batches."""
    sizes = np.bincount(photo_labels)
    groups = np.concatenate(list(batches)).reshape(-1, FLAGS.k)
    ordered = np.sort(groups, axis=1)
    distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1)
    label = photo_labels[groups[:, 0]]
    two, four = sizes[label] >= 2, sizes[label] >= 4
    positive = np.zeros(sizes.size, bool)
    positive[label[distinct >= 2]] = True
    return {
        "groups": len(groups),
        "groups_2plus": float((distinct[two] >= 2).mean()),
        "mean_distinct_4plus": float(distinct[four].mean()),
        "landmarks_with_pair": float(positive[sizes >= 2].mean()),
        "landmarks_drawn": float((np.bincount(label, minlength=sizes.size) > 0).mean()),
    }


def main(argv) -> None:
    del argv
    smoke.apply_absl(SMOKE)
    t0 = time.perf_counter()
    rng = np.random.default_rng(FLAGS.seed)
    sizes = gld_sizes(FLAGS.landmarks, FLAGS.head, FLAGS.median, FLAGS.sigma)
    photo_labels = np.repeat(np.arange(sizes.size), sizes)
    steps = photo_labels.size // (FLAGS.p * FLAGS.k)
    per_shard = shard_photos(sizes)
    shard_rows = [len(s) for s in per_shard]
    print(f"GLD-shaped labels: {sizes.size:,} landmarks, {photo_labels.size:,} photos, head {sizes.max():,}, "
          f"median {int(np.median(sizes))}, {(sizes < 4).sum():,} landmarks under 4 photos, "
          f"{(sizes < 2).sum():,} with 1; P x K = {FLAGS.p} x {FLAGS.k}, {steps:,} steps = one epoch")
    print(f"shard plan: {len(per_shard)} shards of {min(shard_rows)}-{max(shard_rows)} rows, "
          f"{sum(1 for p in shards.plan_landmarks({lb: int(n) for lb, n in enumerate(sizes)}, 0, FLAGS.rows_per_shard).pieces.values() if len(p) > 1)} "
          "landmarks span several shards")
    held_old = FLAGS.window + FLAGS.shuffle_buffer
    held_new = FLAGS.pool_shards * max(shard_rows)
    rows = [("old: windows of %d (+ shuffle %d)" % (FLAGS.window, FLAGS.shuffle_buffer),
             measure(old_epoch(photo_labels, steps, rng), photo_labels), held_old)]
    default_policy = Config.__dataclass_fields__["landmark_sampling"].default  # the trainer's default
    for policy in POLICIES:
        name = f"new: pools of {FLAGS.pool_shards} shards, {policy}" + (" (default)" * (policy == default_policy))
        rows.append((name, measure(new_epoch(photo_labels, per_shard, policy, steps, rng), photo_labels), held_new))
    header = ("sampler", "groups 2+ distinct", "mean distinct (4+)", "landmarks w/ pair", "landmarks drawn",
              "records held", "MB held")
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for name, m, held in rows:
        print(f"| {name} | {m['groups_2plus']:.1%} | {m['mean_distinct_4plus']:.2f} | {m['landmarks_with_pair']:.1%} | "
              f"{m['landmarks_drawn']:.1%} | {held:,} | {held * FLAGS.kb_per_record / 1000:.0f} |")
    default = rows[1 + POLICIES.index(default_policy)][1]
    checks = [("groups with 2+ distinct >= 99%", default["groups_2plus"] >= 0.99),
              ("mean distinct >= 3.9 of K=4", default["mean_distinct_4plus"] >= 3.9),
              ("landmarks with a real pair >= 95%", default["landmarks_with_pair"] >= 0.95)]
    print("\ntargets (new, default policy): " + ", ".join(f"{n}: {'PASS' if ok else 'FAIL'}" for n, ok in checks))
    print(f"(targets computed over groups / landmarks with 2+ and 4+ photos; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    app.run(main)
