"""Deterministic shard assignment and the atomic, resumable shard writer.

A row's shard is a stable hash of its id modulo the split's shard count, so every rerun on the
same input puts it in the same shard. A shard is written whole under a temporary name (which
never matches `schema.shard_pattern`), renamed onto its final name, and only then is its
completion marker `DIR/_parts/{shard}.json` written. The marker also carries that shard's
failures, label histogram and byte count, so `failures.csv` and `stats.json` can be rebuilt
from all markers after a resumed run, and a fingerprint of the shard's input rows and image
settings: a rerun skips a shard only when its marker matches the fingerprint and the shard file
still has the recorded size, so changed input or settings redo it rather than keep stale data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from pipelines import schema, storage

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
    """`num_shards` when given (> 0), else enough shards of about `rows_per_shard` rows."""
    if num_shards > 0:
        return num_shards
    return max(1, math.ceil(rows / rows_per_shard))


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


def all_keys(counts: Dict[str, int]) -> List[ShardKey]:
    """Every shard key of a {split: shard count} plan, in name order."""
    return [ShardKey(split, i, n) for split, n in sorted(counts.items()) for i in range(n)]
