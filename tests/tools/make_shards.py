"""Write tiny TFRecord shards of clearly structured images, without TensorFlow.

TensorFlow-side tests (trainer, indexer) cannot import the `tfrecord` package, so they run this
as a subprocess: `python -m tests.tools.make_shards --output_dir=DIR ...`. Class `c` is a fixed
colour pair and stripe orientation; each image jitters position, brightness and noise, so a
network can learn to separate classes while raw pixels do not trivially do so.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from pipelines import schema, shard_index
from pipelines.graph import shards


def class_image(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One jittered view of class `label` as uint8 [size, size, 3]."""
    base = np.random.default_rng(1000 + label)
    fg, bg = base.integers(0, 256, 3), base.integers(0, 256, 3)
    angle = base.uniform(0, np.pi)
    period = base.uniform(4, 12)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shift = rng.uniform(0, period)
    phase = (xx * np.cos(angle) + yy * np.sin(angle) + shift) / period
    mask = (np.sin(2 * np.pi * phase) > 0)[..., None]
    img = np.where(mask, fg, bg).astype(np.float32)
    img = img * rng.uniform(0.7, 1.3) + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split(path: str, records: list[schema.ImageRecord]) -> int:
    """Write one shard; returns its size in bytes."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for r in records:
            f.write(schema.frame(schema.serialize(r)))
    os.replace(tmp, path)
    return os.path.getsize(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--per_class", default="6", help="images per class: one int, or a comma list per class")
    ap.add_argument("--val_per_class", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("whole_landmarks", "hashed"), default="whole_landmarks",
                    help="whole_landmarks (+ shard_index.json, as make preprocess writes) or the old round robin")
    args = ap.parse_args()

    per = [int(x) for x in args.per_class.split(",")]
    per = per * args.classes if len(per) == 1 else per
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    splits: dict[str, list[schema.ImageRecord]] = {"train": [], "val": []}
    for label in range(args.classes):
        for split, n in (("train", per[label]), ("val", args.val_per_class)):
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(class_image(label, rng, args.size)).save(buf, format="JPEG", quality=90)
                image_id = f"{split}-{label:03d}-{i:03d}"
                splits[split].append(
                    schema.ImageRecord(image_id, buf.getvalue(), args.size, args.size, label, f"gen://{image_id}")
                )
    index_rows = []
    for split, records in splits.items():
        if not records:  # --val_per_class=0: no val shards, as `make preprocess --val_fraction=0` leaves
            continue
        if args.layout == "hashed":  # round robin: every landmark in every shard, no shard index
            per_shard = [records[s :: args.shards] for s in range(args.shards)]
        else:  # as `make preprocess` writes them
            per_shard = [[] for _ in range(args.shards)]
            by_label: dict[int, list] = {}
            for r in records:
                by_label.setdefault(r.landmark_id, []).append(r)
            plan = shards.plan_landmarks({lb: len(rs) for lb, rs in by_label.items()}, args.shards, 1)
            for lb, parts in plan.pieces.items():
                placed = dict(shards.place_rows([r.image_id for r in by_label[lb]], parts))
                for r in by_label[lb]:
                    per_shard[placed[r.image_id]].append(r)
        for s, chunk in enumerate(per_shard):
            name = schema.shard_name(split, s, args.shards)
            size = write_split(os.path.join(args.output_dir, name), chunk)
            labels = collections.Counter(str(r.landmark_id) for r in chunk)
            index_rows.append((split, shard_index.WHOLE_LANDMARKS, name, len(chunk), size, labels))
    if args.layout == "whole_landmarks":
        with open(os.path.join(args.output_dir, shard_index.FILE), "wb") as f:
            f.write(shard_index.build(args.size, index_rows))


def run(output_dir: pathlib.Path, *args: str, **flags: object) -> pathlib.Path:
    """Run this tool in a subprocess (TF-side tests cannot import `tfrecord`) into `output_dir`,
    with flags given as `"--name=value"` strings or as keywords; returns `output_dir`."""
    argv = [*args, *(f"--{name}={value}" for name, value in flags.items())]
    subprocess.run([sys.executable, "-m", "tests.tools.make_shards", f"--output_dir={output_dir}", *argv],
                   cwd=pathlib.Path(__file__).resolve().parents[2], check=True, capture_output=True, timeout=120)
    return output_dir


if __name__ == "__main__":
    main()
