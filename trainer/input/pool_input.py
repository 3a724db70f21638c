"""tf.data: train shards -> pools of whole shards -> (encoded image, label, seed) in P x K batch order.

The shard files are shuffled every pass and taken `pool_shards` at a time; each pool's records are
read into one tensor of serialized records (its labels alone are parsed for planning), planned by
`sampling.PoolPlanner` and gathered batch by batch. Memory: one pool of serialized records at a
time, i.e. at most `pool_shards` x (largest shard) records, plus one batch being gathered; the
planning state is the pool's labels (8 bytes each) and the split's per-landmark totals.

Every random choice is stateless, from one stream seed: the file order of pass i, the plan of pool
n, and each element's augmentation seed. So the stream is reproducible, and the whole graph can be
run by another process: the planner is a Python function registered under a fixed name
(`PLAN_TOKEN`) in every process that imports this module, rather than a `tf.numpy_function`
closure, which only the process that built the graph can call. That is what lets tf.data service
workers (`trainer/data_service.py`) run it. `salt=True` adds a runtime value (the clock, read when
the stream starts) to the stream seed, so that service workers running the same graph produce
different streams.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import gen_script_ops, script_ops

from pipelines import schema
from trainer.input import shard_check
from trainer.input.sampling import POLICIES, PoolPlanner

# A pool can legitimately yield no batch (fewer than P landmarks, or too few groups drawn); this
# many whole passes over the files without a single batch means none ever will.
_EMPTY_PASSES = 3
PLAN_TOKEN = "landmark_pool_plan_v1"
_ELEMENT_SEEDS = 0x5DEECE66D  # keeps element seeds apart from the file-order seeds (stream seed, pass)

_planners: Dict[tuple, PoolPlanner] = {}
_empty_in_a_row: Dict[int, int] = {}


def _plan(labels, stream_seed, pool_number, p, k, policy, keys, totals, split_records, max_empty) -> np.ndarray:
    """int64 [B, P*K] for one pool: `PoolPlanner.plan`, its generator seeded by (stream seed, pool number)."""
    spec = (int(p), int(k), int(policy), keys.tobytes(), totals.tobytes(), int(split_records))
    if spec not in _planners:
        _planners[spec] = PoolPlanner(int(p), int(k), POLICIES[int(policy)], 0,
                                      dict(zip(keys.tolist(), totals.tolist())), int(split_records))
    planner = _planners[spec]
    batches = planner.plan(labels, np.random.default_rng([int(stream_seed) & (2**63 - 1), int(pool_number)]))
    key = int(stream_seed)
    _empty_in_a_row[key] = 0 if len(batches) else _empty_in_a_row.get(key, 0) + 1
    if _empty_in_a_row[key] > max_empty:
        raise ValueError(
            f"{_empty_in_a_row[key]} pools in a row gave no batch of P={planner.p} distinct landmarks: the train "
            "split has too few landmarks per pool; raise --pool_shards or lower P in --batch")
    return batches


# Registered by name in every process that imports this module (the trainer, tf.data service workers).
script_ops._py_funcs._funcs[PLAN_TOKEN] = _plan  # pylint: disable=protected-access  # noqa: SLF001


def runtime_salt() -> tf.Tensor:
    """int64 from the clock when the op runs (microseconds): differs between service workers."""
    return tf.cast(tf.timestamp() * 1e6, tf.int64)


def pk_records(files: List[str], planner: PoolPlanner, pool_shards: int, seed: int,
               record_share: Optional[Tuple[int, int]] = None, skip_corrupt: bool = False,
               salt: bool = False) -> tf.data.Dataset:
    """Endless (encoded, label, seed [2]) elements; each run of P*K consecutive elements is one batch.

    `planner` gives P, K, the policy and the split's totals. `record_share=(n, i)` keeps every n-th
    record of each pool from the i-th (multi-worker input with fewer files than input pipelines:
    every pipeline then reads the same pools, same `seed`). `skip_corrupt`: each shard ends at its
    first damaged record (shard_check.py). `salt`: see the module docstring.
    """
    pool = max(1, min(pool_shards, len(files)))
    pk = planner.p * planner.k
    max_empty = _EMPTY_PASSES * -(-len(files) // pool)
    read_shard = shard_check.reader(skip_corrupt)
    keys = np.fromiter(planner.totals.keys(), np.int64, len(planner.totals))
    totals = np.fromiter(planner.totals.values(), np.int64, len(planner.totals))
    constants = [tf.constant(v, tf.int64) for v in (planner.p, planner.k, POLICIES.index(planner.policy))]
    constants += [tf.constant(keys), tf.constant(totals), tf.constant(planner.split_records, tf.int64),
                  tf.constant(max_empty, tf.int64)]

    def read_pool(names: tf.Tensor) -> tf.data.Dataset:
        # One element: every serialized record of the pool's shards.
        return tf.data.Dataset.from_tensor_slices(names).interleave(
            read_shard, cycle_length=pool, num_parallel_calls=pool, deterministic=True).batch(1 << 30)

    def stream(stream_seed: tf.Tensor) -> tf.data.Dataset:
        def one_pass(i):
            order = tf.random.experimental.stateless_shuffle(tf.constant(files), tf.stack([stream_seed, i]))
            return tf.data.Dataset.from_tensor_slices(order).batch(pool)

        def expand(serialized: tf.Tensor, n: tf.Tensor) -> tf.data.Dataset:
            if record_share is not None:
                serialized = serialized[record_share[1]::record_share[0]]
            labels = tf.io.parse_example(serialized, {schema.LANDMARK_ID: tf.io.FixedLenFeature([], tf.int64)})
            idx = gen_script_ops.py_func(input=[labels[schema.LANDMARK_ID], stream_seed, n, *constants],
                                         token=PLAN_TOKEN, Tout=[tf.int64])[0]
            idx = tf.reshape(idx, [-1, pk])

            def gather(m: tf.Tensor, ix: tf.Tensor):
                # One parse per batch; element seeds (stream, pool n, batch m, position), all distinct.
                parsed = schema.tf_parse(tf.gather(serialized, ix))
                seeds = tf.stack([tf.fill([pk], tf.bitwise.bitwise_xor(stream_seed, _ELEMENT_SEEDS)),
                                  n * (1 << 32) + m * pk + tf.range(pk, dtype=tf.int64)], axis=1)
                return parsed[schema.ENCODED], parsed[schema.LANDMARK_ID], seeds

            return tf.data.Dataset.from_tensor_slices(idx).enumerate().map(gather)

        pools = tf.data.Dataset.counter().flat_map(one_pass).flat_map(read_pool)
        return tf.data.Dataset.zip(pools, tf.data.Dataset.counter()).flat_map(expand).unbatch()

    start = tf.data.Dataset.from_tensors(tf.constant(seed, tf.int64))
    if salt:
        start = start.map(lambda s: s + runtime_salt())
    return start.flat_map(stream)
