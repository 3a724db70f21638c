"""P x K batches from a stream of records, on a long tail, without holding the dataset in memory.

The stream (already shuffled) is cut into windows of `window` records. Within a window, each
landmark's images form groups of exactly K: a landmark with fewer than K images (most of them, on
a long tail) is topped up by drawing its images again, so a landmark with a single image still
appears, as K differently augmented views that are negatives for every other group. Groups are then
dealt into batches of P groups with P distinct landmarks; leftovers that fill no batch are dropped
(the next epoch's shuffle gives them another chance). Only labels enter Python (`plan_batches`); the
encoded images stay in the tf.data graph and are gathered by the planned indices.

The batches built here are per replica: every replica's batch holds whole P x K groups, so its
triplet mining always sees positives.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import tensorflow as tf

from pipelines import schema


def plan_batches(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into `labels` forming whole batches of P landmarks x K images, flattened.

    Labels below 0 (no landmark) are never sampled. Raises ValueError when the window holds
    fewer than P landmarks, since no batch can then be formed.
    """
    labels = np.asarray(labels).reshape(-1)
    usable = np.flatnonzero(labels >= 0)
    usable = usable[rng.permutation(usable.size)]
    by_label: Dict[int, List[int]] = {}
    for i in usable:
        by_label.setdefault(int(labels[i]), []).append(int(i))
    if len(by_label) < p:
        raise ValueError(
            f"a sampling window of {labels.size} records holds {len(by_label)} landmarks, fewer than the "
            f"P={p} a replica batch needs: raise --sampling_window or lower P in --batch"
        )
    groups = []  # (label, K indices)
    for label, idx in by_label.items():
        count = -(-len(idx) // k)  # ceil
        padded = idx + list(rng.choice(idx, count * k - len(idx)))
        groups += [(label, padded[g * k : (g + 1) * k]) for g in range(count)]
    order = rng.permutation(len(groups))
    open_batches: List[List] = []  # each: list of (label, indices), distinct labels
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
    return np.asarray(batches, dtype=np.int64).reshape(-1)


def pk_records(records: tf.data.Dataset, p: int, k: int, window: int, seed: int) -> tf.data.Dataset:
    """Serialized records -> (encoded image, label) elements in P x K order, endless if `records` is.

    Consecutive runs of P*K elements are one batch: batch with `drop_remainder=True` and keep the
    order (deterministic maps) until then.
    """
    rng = np.random.default_rng(seed)

    def plan(labels: np.ndarray) -> np.ndarray:
        return plan_batches(labels, p, k, rng)

    def expand(parsed: Dict[str, tf.Tensor]) -> tf.data.Dataset:
        idx = tf.numpy_function(plan, [parsed[schema.LANDMARK_ID]], tf.int64, stateful=True)
        idx = tf.reshape(idx, [-1])
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(parsed[schema.ENCODED], idx), tf.gather(parsed[schema.LANDMARK_ID], idx))
        )

    windows = records.batch(window, drop_remainder=True).map(schema.tf_parse)
    return windows.flat_map(expand)
