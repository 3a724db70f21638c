"""Class-balanced P x K batches from a pool of whole shards: labels in, record indices out.

The preprocessing keeps each landmark's photos in one shard (or consecutive shards for a landmark
larger than a shard; pipelines/graph/shards.py), so a pool of a few whole shards holds every photo of
its landmarks. Within a pool, `PoolPlanner`:

1. gives each landmark a number of K-groups drawn from its expected share of the epoch under the
   `--landmark_sampling` policy: a landmark with `n` photos in the whole split is weighted
   `1` (uniform), `sqrt(n)` (sqrt, the default) or `n` (proportional), scaled by the part of it
   this pool holds, so that a landmark cut over several shards is not counted once per piece.
   The scale makes one epoch draw about as many images as the split holds (stochastic rounding);
2. fills each group with K *distinct* photos whenever the landmark has at least K in the pool
   (successive groups walk a random permutation of its photos, so every photo is used before any
   repeats); a landmark with fewer than K photos gets all of them plus repeats (each copy is
   augmented differently downstream), so a single-photo landmark still serves as a negative;
3. deals the groups into batches of P distinct landmarks: groups sorted by landmark, group i to
   batch i mod B, so a landmark's groups (at most B) always land in different batches.

Groups a pool cannot place (a landmark given more groups than the pool has batches, or the
remainder below one batch) are dropped, and a pool with fewer than P landmarks yields nothing.
Without totals for the whole split (records without `shard_index.json`) the pool is taken as the
whole world. NumPy only (no TensorFlow), so `bench/bench_sampler.py` runs it at GLD scale in
seconds; `trainer/input/pool_input.py` runs it inside tf.data.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

POLICIES = ("uniform", "sqrt", "proportional")


def policy_weight(counts: np.ndarray, policy: str) -> np.ndarray:
    """The weight of landmarks with `counts` photos under a policy."""
    counts = np.asarray(counts, dtype=np.float64)
    if policy == "uniform":
        return np.ones_like(counts)
    if policy == "sqrt":
        return np.sqrt(counts)
    if policy == "proportional":
        return counts
    raise ValueError(f"landmark sampling policy {policy!r}: expected one of {POLICIES}")


def k_groups(members: np.ndarray, groups: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """[groups, k] indices from `members`: k distinct ones per group when there are at least k,
    walking one random permutation (every member used before any repeats); else every member
    plus random repeats."""
    m = members.size
    if m >= k:
        order = members[rng.permutation(m)]
        start = int(rng.integers(m))
        return order[(start + np.arange(groups * k)) % m].reshape(groups, k)
    extra = rng.integers(0, m, size=(groups, k - m))
    return np.concatenate([np.tile(members, (groups, 1)), members[extra]], axis=1)


class PoolPlanner:
    """Plans the batches of each pool in turn (stateful: owns the random generator).

    `totals` ({landmark: photos in the whole split}) and `split_records` come from the shard index;
    without them each pool is planned as if it were the whole split.
    """

    def __init__(self, p: int, k: int, policy: str, seed: int,
                 totals: Optional[Mapping[int, int]] = None, split_records: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"landmark sampling policy {policy!r}: expected one of {POLICIES}")
        self.p, self.k, self.policy = p, k, policy
        self.rng = np.random.default_rng(seed)
        self.totals: Dict[int, int] = dict(totals or {})
        self.split_records = split_records
        self.groups_per_weight = 0.0
        if self.totals:
            counts = np.fromiter(self.totals.values(), dtype=np.float64)
            records = split_records or counts.sum()
            self.groups_per_weight = records / k / policy_weight(counts, policy).sum()

    def expected_groups(self, labels: np.ndarray, in_pool: np.ndarray) -> np.ndarray:
        """Expected K-groups this pool owes each landmark (`labels`, with `in_pool` photos here)."""
        if self.totals:
            total = np.array([self.totals.get(int(lb), 0) for lb in labels], dtype=np.float64)
            total = np.maximum(total, in_pool)  # a label the index does not know: this pool is all of it
            return self.groups_per_weight * policy_weight(total, self.policy) * in_pool / total
        weight = policy_weight(in_pool, self.policy)
        return in_pool.sum() / self.k * weight / weight.sum()

    def plan(self, labels: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """int64 [B, P*K]: row b is batch b, P groups of K consecutive indices into `labels`, each
        group one landmark, the P landmarks distinct. Labels below 0 are never drawn. B may be 0.
        `rng`: this plan's generator (default: the planner's own, advanced by every plan)."""
        p, k = self.p, self.k
        rng = self.rng if rng is None else rng
        labels = np.asarray(labels).reshape(-1)
        usable = np.flatnonzero(labels >= 0)
        uniq, inverse, in_pool = np.unique(labels[usable], return_inverse=True, return_counts=True)
        if uniq.size < p:
            return np.zeros([0, p * k], np.int64)
        expected = self.expected_groups(uniq, in_pool)
        counts = np.floor(expected).astype(np.int64)
        counts += rng.random(expected.size) < expected - counts  # stochastic rounding
        batches = int(counts.sum()) // p
        while True:  # no landmark may own more groups than there are batches
            capped = np.minimum(counts, batches)
            if capped.sum() >= batches * p:
                break
            batches = int(capped.sum()) // p
        if batches == 0:
            return np.zeros([0, p * k], np.int64)
        # Drop surplus groups at random, one group at a time, so each landmark keeps at most `batches`.
        owner = np.repeat(np.arange(uniq.size), capped)
        keep = np.sort(rng.choice(owner.size, batches * p, replace=False))
        counts = np.bincount(owner[keep], minlength=uniq.size)
        by_landmark = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(in_pool)])
        groups = []
        for j in rng.permutation(uniq.size):  # landmarks in random order, each one's groups together
            if counts[j]:
                members = usable[by_landmark[bounds[j] : bounds[j + 1]]]
                groups.append(k_groups(members, int(counts[j]), k, rng))
        dealt = np.concatenate(groups).reshape(p, batches, k).transpose(1, 0, 2)  # group i -> batch i mod B
        return dealt[rng.permutation(batches)].reshape(batches, p * k).astype(np.int64)
