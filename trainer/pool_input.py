"""tf.data: train shards -> pools of whole shards -> (encoded image, label) in P x K batch order.

The shard files are shuffled every pass and taken `pool_shards` at a time; each pool's records are
read into one tensor of serialized records (its labels alone are parsed for planning), planned by
`sampling.PoolPlanner` and gathered batch by batch. Memory: one pool of serialized records at a
time, i.e. at most `pool_shards` x (largest shard) records, plus one batch being gathered; the
planning state is the pool's labels (8 bytes each) and the split's per-landmark totals.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from pipelines import schema
from trainer import shard_check
from trainer.sampling import PoolPlanner

# A pool can legitimately yield no batch (fewer than P landmarks, or too few groups drawn); this
# many whole passes over the files without a single batch means none ever will.
_EMPTY_PASSES = 3


def pk_records(files: List[str], planner: PoolPlanner, pool_shards: int, seed: int,
               record_share: Optional[Tuple[int, int]] = None, skip_corrupt: bool = False) -> tf.data.Dataset:
    """Endless (encoded, label) elements; each run of P*K consecutive elements is one batch.

    `record_share=(n, i)` keeps every n-th record of each pool from the i-th (multi-worker input
    with fewer files than input pipelines: every pipeline then reads the same pools, same `seed`).
    `skip_corrupt`: each shard ends at its first damaged record (shard_check.py).
    """
    pool = max(1, min(pool_shards, len(files)))
    pk = planner.p * planner.k
    max_empty = _EMPTY_PASSES * -(-len(files) // pool)
    empty_in_a_row = [0]
    read_shard = shard_check.reader(skip_corrupt)

    def plan(labels: np.ndarray) -> np.ndarray:
        batches = planner.plan(labels)
        empty_in_a_row[0] = 0 if len(batches) else empty_in_a_row[0] + 1
        if empty_in_a_row[0] > max_empty:
            raise ValueError(
                f"{empty_in_a_row[0]} pools of {pool} shard(s) in a row gave no batch of P={planner.p} distinct "
                "landmarks: the train split has too few landmarks per pool; raise --pool_shards or lower P in --batch")
        return batches

    def read_pool(names: tf.Tensor) -> tf.data.Dataset:
        # One element: every serialized record of the pool's shards.
        return tf.data.Dataset.from_tensor_slices(names).interleave(
            read_shard, cycle_length=pool, num_parallel_calls=pool, deterministic=True).batch(1 << 30)

    def expand(serialized: tf.Tensor) -> tf.data.Dataset:
        if record_share is not None:
            serialized = serialized[record_share[1]::record_share[0]]
        labels = tf.io.parse_example(serialized, {schema.LANDMARK_ID: tf.io.FixedLenFeature([], tf.int64)})
        idx = tf.numpy_function(plan, [labels[schema.LANDMARK_ID]], tf.int64, stateful=True)
        idx = tf.reshape(idx, [-1, pk])
        return tf.data.Dataset.from_tensor_slices(idx).map(lambda ix: tf.gather(serialized, ix))

    def parse(serialized: tf.Tensor):
        parsed = schema.tf_parse(serialized)
        return parsed[schema.ENCODED], parsed[schema.LANDMARK_ID]

    files_ds = tf.data.Dataset.from_tensor_slices(files)
    files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).batch(pool).repeat()
    return files_ds.flat_map(read_pool).flat_map(expand).unbatch().map(parse)
