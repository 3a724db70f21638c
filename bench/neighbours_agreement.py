"""`python -m bench.neighbours_agreement --data_dir=DATA [--weights=H5] [--seeds=0,1,2,3]`: on real photos,
how often the Annoy path of indexer/ranking/neighbours.py gives the exact path's top-k sets.

The references are DATA/train.csv's photos, embedded by MobileNet 0.25 with the ImageNet weights
(`--weights`, the Keras `no_top` file; global average pooled, 224 px, unit length): untrained
features, whose cosines sit close together (the built-in data's at 0.5-1), a hard case for Annoy's
splits. Both paths run on the same vectors (the Annoy path forced: `exact_below=0`), once per Annoy
seed; printed per seed: the share of references whose neighbour set is the exact path's, for the
other-landmark penalty (k 5, other landmarks only) and DBA (k 10 and k 2: 9 and 1 others).
The demo's own trained embeddings are compared by bench/neighbours_gap.py (penalties and GAP).
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "a data folder with train.csv (id,url,landmark_id; url relative to it)")
flags.DEFINE_string("weights", "../shared/weights/mobilenet_2_5_224_tf_no_top.h5", "MobileNet 0.25 ImageNet weights")
flags.DEFINE_list("seeds", ["0", "1", "2", "3"], "Annoy seeds")
CASES = (("penalty k 5", 5, True), ("DBA k 10", 9, False), ("DBA k 2", 1, False))


def embed(data_dir: str, weights: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    with open(os.path.join(data_dir, "train.csv")) as f:
        rows = list(csv.DictReader(f))
    model = tf.keras.applications.MobileNet(alpha=0.25, weights=weights, include_top=False, pooling="avg",
                                            input_shape=(224, 224, 3))
    parts = []
    for start in range(0, len(rows), 64):
        images = [tf.keras.applications.mobilenet.preprocess_input(tf.image.resize(
            tf.image.decode_jpeg(tf.io.read_file(os.path.join(data_dir, r["url"])), 3), (224, 224)))
            for r in rows[start:start + 64]]
        parts.append(model(tf.stack(images), training=False).numpy())
    x = np.concatenate(parts).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array([int(r["landmark_id"]) for r in rows], np.int64)


def agreement(x: np.ndarray, labels: np.ndarray, seeds: list[int]) -> dict[str, list[float]]:
    from indexer.ranking import neighbours

    def items(k, lab, settings):
        return np.sort(np.concatenate([c[1] for c in neighbours.top_k(x, k, lab, settings)]), axis=1)

    out = {}
    for name, k, with_labels in CASES:
        lab = labels if with_labels else None
        exact = items(k, lab, neighbours.NeighbourSettings(exact_below=len(x) + 1))
        out[name] = [float((items(k, lab, neighbours.NeighbourSettings(exact_below=0, seed=s)) == exact).all(axis=1).mean())
                     for s in seeds]
    return out


def main(argv) -> None:
    del argv
    if not FLAGS.data_dir or not os.path.exists(os.path.join(FLAGS.data_dir, "train.csv")):
        sys.exit(f"neighbours_agreement: --data_dir={FLAGS.data_dir}: expected a folder with train.csv")
    seeds = [int(s) for s in FLAGS.seeds]
    x, labels = embed(FLAGS.data_dir, FLAGS.weights)
    print(f"{len(x)} references of {len(np.unique(labels))} landmarks, {x.shape[1]}-d; Annoy seeds {seeds}")
    print("| neighbours | " + " | ".join(f"seed {s}" for s in seeds) + " | lowest |")
    print("| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |")
    for name, shares in agreement(x, labels, seeds).items():
        print(f"| {name} | " + " | ".join(f"{v:.2%}" for v in shares) + f" | {min(shares):.2%} |")


if __name__ == "__main__":
    app.run(main)
