"""Deterministic shard assignment and the atomic, resumable shard writer.

Labelled splits (`LANDMARK_SPLITS`) keep each landmark's photos together: `plan_landmarks` packs
whole landmarks into shards balanced in rows, and a landmark larger than a shard spans
consecutive shards, cut by sorted image id (`place_rows`). So a reader that holds a few whole
shards holds every photo of their landmarks, which is what lets the trainer draw K distinct photos
of a landmark (trainer/input/sampling.py). The plan depends only on the per-landmark row counts, so every
rerun on the same input makes the same plan. The test split keeps the old layout: a row's shard is
a stable hash of its id modulo the split's shard count. A shard is written whole under a temporary name (which
never matches `schema.shard_pattern`), renamed onto its final name, and only then is its
completion marker `DIR/_parts/{shard}.json` written. The marker also carries that shard's
failures, label histogram and byte count, so `failures.csv` and `stats.json` can be rebuilt
from all markers after a resumed run, and a fingerprint of the shard's input rows and image
settings: a rerun skips a shard only when its marker matches the fingerprint and the shard file
still has the recorded size, so changed input or settings redo it rather than keep stale data.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from pipelines import schema
from pipelines.sources import storage

PARTS_DIR = "_parts"
# Test hook: exit the process just before publishing the shard after this many published ones
# (simulates a worker killed mid-write; only the resume test sets it).
CRASH_ENV = "PIPELINES_TEST_CRASH_AFTER_SHARDS"

_LOG = logging.getLogger(__name__)
_published_in_process = 0


class ShardKey(NamedTuple):
    split: str
    index: int
    count: int

    @property
    def name(self) -> str:
        return schema.shard_name(self.split, self.index, self.count)


def stable_hash(salt: str, text: str) -> int:
    """A 64-bit hash that is the same in every process and Python version (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode("utf-8")).digest()[:8], "big")


def stable_fraction(salt: str, text: str) -> float:
    """`stable_hash` mapped to [0, 1)."""
    return stable_hash(salt, text) / 2.0**64


def shard_index(image_id: str, count: int) -> int:
    return stable_hash("shard", image_id) % count


def shard_count(rows: int, num_shards: int, rows_per_shard: int) -> int:
    """`num_shards` when given (> 0), capped at the split's row count (more shards could only be
    empty: `--num_shards=100000` on 261 rows wrote 200,000 files), else enough shards of about
    `rows_per_shard` rows."""
    if num_shards > 0:
        return max(1, min(num_shards, rows))
    return max(1, math.ceil(rows / rows_per_shard))


# Splits whose shards hold whole landmarks; any other split is sharded by a hash of the image id.
LANDMARK_SPLITS = ("train", "val")


class SplitPlan(NamedTuple):
    """Where a split's rows go: `count` shards, and for each landmark its (shard, rows) pieces in
    shard order (empty for a hashed split)."""

    count: int
    pieces: Dict[int, List[Tuple[int, int]]]


def plan_landmarks(sizes: Dict[int, int], num_shards: int, rows_per_shard: int) -> SplitPlan:
    """Whole landmarks into shards balanced in rows; `sizes` is {landmark_id: rows}.

    Each shard gets a capacity of ceil(rows / shards). Landmarks larger than that are laid end to
    end from shard 0, each filling consecutive shards (the last piece may share its shard with the
    next one); the rest go, largest first (ties by id), to the shard with the most room left (LPT),
    so shard sizes differ by at most about one small landmark. Deterministic for the same sizes.
    """
    total = sum(sizes.values())
    count = shard_count(total, num_shards, rows_per_shard)
    capacity = max(1, math.ceil(total / count))
    order = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    pieces: Dict[int, List[Tuple[int, int]]] = {}
    load = [0] * count
    cursor = 0  # rows laid so far by the landmarks larger than a shard
    for label, n in order:
        if n <= capacity:
            break
        start, left, parts = cursor, n, []
        while left:
            shard = start // capacity
            take = min(left, capacity - start % capacity)
            parts.append((shard, take))
            load[shard] += take
            start, left = start + take, left - take
        pieces[label], cursor = parts, start
    room = [(-(capacity - load[i]), i) for i in range(count)]  # most room first, then lowest index
    heapq.heapify(room)
    for label, n in order:
        if label in pieces:
            continue
        free, shard = heapq.heappop(room)
        pieces[label] = [(shard, n)]
        load[shard] += n
        heapq.heappush(room, (free + n, shard))
    return SplitPlan(count, pieces)


def place_rows(ids: Sequence[str], parts: Sequence[Tuple[int, int]]) -> List[Tuple[str, int]]:
    """(id, shard) for one landmark's rows: sorted by id and cut into `parts`' (shard, rows) pieces."""
    if sum(n for _, n in parts) != len(ids):
        raise ValueError(f"plan holds {sum(n for _, n in parts)} rows for a landmark that has {len(ids)}")
    ordered, out, start = sorted(ids), [], 0
    for shard, n in parts:
        out += [(image_id, shard) for image_id in ordered[start : start + n]]
        start += n
    return out


def fingerprint(settings: str, rows: Iterable[Tuple[str, str, int]]) -> str:
    """Digest of a shard's (id, url, landmark_id) rows and the image settings that shape its bytes."""
    h = hashlib.sha256(settings.encode("utf-8"))
    for image_id, url, label in sorted(rows):
        h.update(f"\x00{image_id}\x01{url}\x01{label}".encode("utf-8"))
    return h.hexdigest()


def shard_path(output_dir: str, key: ShardKey) -> str:
    return storage.join(output_dir, key.name)


def marker_path(output_dir: str, key: ShardKey) -> str:
    return storage.join(output_dir, PARTS_DIR, key.name[: -len(schema.SHARD_SUFFIX)] + ".json")


def read_marker(output_dir: str, key: ShardKey) -> Optional[dict]:
    """The completion marker of a shard, or None when absent or unreadable."""
    try:
        return json.loads(storage.read_bytes(marker_path(output_dir, key)))
    except FileNotFoundError:
        return None
    except ValueError:
        _LOG.warning("unreadable marker for %s: redoing the shard", key.name)
        return None


def is_complete(output_dir: str, key: ShardKey, digest: str) -> bool:
    """True when the shard was finished by an earlier run on the same rows and settings."""
    marker = read_marker(output_dir, key)
    if marker is None or marker.get("fingerprint") != digest:
        return False
    try:
        return storage.size(shard_path(output_dir, key)) == marker["bytes"]
    except FileNotFoundError:
        return False


# Failure reasons that may pass on their own (`--retry_failed` fetches these rows again).
TRANSIENT_REASONS = ("timeout", "connection_error", "http_429", "http_5xx")


def transient_failures(marker: Optional[dict]) -> List[list]:
    """The failures of a shard's marker that a later run may retry."""
    return [f for f in (marker or {}).get("failures", []) if f[2] in TRANSIENT_REASONS]


class Written(NamedTuple):
    """One record ready for a shard."""

    image_id: str
    serialized: bytes
    landmark_id: int


def write_shard(
    output_dir: str,
    key: ShardKey,
    records: Sequence[Written],
    failures: Sequence[Sequence[str]],
    digest: str,
    source_bytes: int = 0,
) -> dict:
    """Write one shard (records sorted by id) atomically, then its marker; returns the marker.

    `failures` are (id, url, reason, detail) of the shard's rows that were not written;
    `source_bytes` is what was fetched for the shard (for stats.json).
    """
    global _published_in_process
    ordered = sorted(records, key=lambda r: r.image_id)
    data = b"".join(schema.frame(r.serialized) for r in ordered)
    final = shard_path(output_dir, key)
    tmp = storage.write_temp(final, data)
    crash_after = os.environ.get(CRASH_ENV)
    if crash_after is not None and _published_in_process >= int(crash_after):
        _LOG.error("%s=%s: exiting before publishing %s", CRASH_ENV, crash_after, key.name)
        os._exit(17)
    storage.publish(tmp, final)
    _published_in_process += 1
    labels: Dict[str, int] = {}
    for r in ordered:
        labels[str(r.landmark_id)] = labels.get(str(r.landmark_id), 0) + 1
    marker = {
        "shard": key.name,
        "fingerprint": digest,
        "records": len(ordered),
        "bytes": len(data),
        "source_bytes": source_bytes,
        "labels": labels,
        "failures": sorted([list(f) for f in failures]),
    }
    storage.write_atomic(marker_path(output_dir, key), json.dumps(marker, sort_keys=True).encode("utf-8"))
    return marker


def kept_for_retry(output_dir: str, key: ShardKey, retried_ids: Iterable[str]) -> Tuple[List[Written], List[list], int]:
    """What a finished shard keeps when some of its rows are fetched again: (its records, its
    failures other than those rows', its source bytes), read from the shard and its marker."""
    marker = read_marker(output_dir, key)
    if marker is None:
        raise RuntimeError(f"shard {key.name} lost its marker while its failed rows were retried")
    retried = set(retried_ids)
    records = []
    for payload in schema.iter_frames(storage.read_bytes(shard_path(output_dir, key))):
        record = schema.deserialize(payload)
        records.append(Written(record.image_id, payload, record.landmark_id))
    failures = [f for f in marker["failures"] if f[0] not in retried]
    return records, failures, int(marker.get("source_bytes", 0))


def all_keys(counts: Dict[str, int]) -> List[ShardKey]:
    """Every shard key of a {split: shard count} plan, in name order."""
    return [ShardKey(split, i, n) for split, n in sorted(counts.items()) for i in range(n)]
