"""The run's report: `failures.csv`, `stats.json` and `shard_index.json` (pipelines/shard_index.py),
rebuilt from every shard marker.

Runs once, after every shard of the plan has its marker (written by this run or a finished
earlier one), so a resumed run reports exactly what an uninterrupted one would. It also removes
what earlier runs left that the current plan does not own: shards with another shard count
(readers glob `{split}-*`, so a stale shard would leak into training) and temporary files of
crashed writers. Both files are written atomically and their contents are deterministic.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
from typing import Dict, Iterable, List, Sequence

from pipelines import schema, shard_index
from pipelines.graph import shards
from pipelines.sources import storage

FAILURES_CSV = "failures.csv"
STATS_JSON = "stats.json"

_LOG = logging.getLogger(__name__)


def _remove_stale(output_dir: str, keys: Sequence[shards.ShardKey]) -> List[str]:
    """Delete shards/markers of other plans and leftover temporary files; returns what was removed."""
    own = {k.name for k in keys}
    removed = []
    for path in storage.list_dir(output_dir):
        name = storage.basename(path)
        if schema.parse_shard_name(name) and name not in own:
            storage.delete(path)
            removed.append(path)
    own_markers = {storage.basename(shards.marker_path(output_dir, k)) for k in keys}
    for path in storage.list_dir(storage.join(output_dir, shards.PARTS_DIR)):
        if storage.basename(path) not in own_markers:
            storage.delete(path)
            removed.append(path)
    for tmp_dir in (storage.join(output_dir, storage.TMP_DIR), storage.join(output_dir, shards.PARTS_DIR, storage.TMP_DIR)):
        for path in storage.list_dir(tmp_dir):
            storage.delete(path)
            removed.append(path)
        storage.remove_empty_dir(tmp_dir)
    return removed


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A CSV file's bytes: header, then rows, `\\n` line ends, UTF-8."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def failures_csv(rows: Iterable[Sequence[str]]) -> bytes:
    """`id,url,reason,detail` lines, sorted, for (id, url, reason[, detail]) tuples; `detail` says
    what exactly went wrong (the line and the quote, the HTTP status, the file kind, ...)."""
    return csv_bytes(
        ["id", "url", "reason", "detail"], sorted((r[0], r[1], r[2], r[3] if len(r) > 3 else "") for r in rows)
    )


def finalize(
    output_dir: str,
    shard_counts: Dict[str, int],
    input_failures: Sequence[Sequence[str]],
    rows_in: int,
    settings: Dict[str, object],
) -> dict:
    """Write failures.csv and stats.json for the whole plan; returns the stats.

    `input_failures` are the (id, url, reason, detail) rows dropped before sharding (bad_row,
    duplicate_id); each shard's own failures come from its marker.
    """
    keys = shards.all_keys(shard_counts)
    failures = [tuple(f) for f in input_failures]
    written_by_split: Dict[str, int] = collections.Counter()
    labels: Dict[int, int] = collections.Counter()
    bytes_written = source_bytes = 0
    index_rows = []  # per shard, for shard_index.json
    for key in keys:
        marker = shards.read_marker(output_dir, key)
        if marker is None:
            raise RuntimeError(f"shard {key.name} has no completion marker: the run is incomplete")
        written_by_split[key.split] += marker["records"]
        for label, n in marker["labels"].items():
            labels[int(label)] += n
        bytes_written += marker["bytes"]
        source_bytes += marker["source_bytes"]
        failures.extend(tuple(f) for f in marker["failures"])
        layout = shard_index.WHOLE_LANDMARKS if key.split in shards.LANDMARK_SPLITS else shard_index.HASHED
        index_rows.append((key.split, layout, key.name, marker["records"], marker["bytes"], marker["labels"]))
    by_reason = collections.Counter(f[2] for f in failures)
    written = sum(written_by_split.values())
    per_landmark = {str(k): labels[k] for k in sorted(labels)}
    stats = {
        "rows_in": rows_in,
        "written": written,
        "written_by_split": dict(sorted(written_by_split.items())),
        "failed": len(failures),
        "failed_by_reason": dict(sorted(by_reason.items())),
        "accounted_for": written + len(failures) == rows_in,
        "shards": dict(sorted(shard_counts.items())),
        "landmarks": sum(1 for k in labels if k != schema.NO_LANDMARK),
        "images_per_landmark": per_landmark,
        "images_per_landmark_histogram": _histogram(v for k, v in labels.items() if k != schema.NO_LANDMARK),
        "bytes_written": bytes_written,
        "source_bytes": source_bytes,
        "settings": settings,
    }
    storage.make_dirs(output_dir)
    storage.write_atomic(storage.join(output_dir, FAILURES_CSV), failures_csv(failures))
    storage.write_atomic(storage.join(output_dir, shard_index.FILE),
                         shard_index.build(int(settings.get("image_size", 0)), index_rows))
    storage.write_atomic(
        storage.join(output_dir, STATS_JSON), (json.dumps(stats, indent=1, sort_keys=False) + "\n").encode("utf-8")
    )
    removed = _remove_stale(output_dir, keys)
    if removed:
        _LOG.info("removed %d files left by earlier runs with another plan or crashed writers", len(removed))
    if not stats["accounted_for"]:
        _LOG.error("rows in %d != written %d + failed %d", rows_in, written, len(failures))
    return stats


def _histogram(counts: Iterable[int]) -> Dict[str, int]:
    """How many landmarks have 1, 2-3, 4-7, 8-15, ... images (power-of-two buckets)."""
    buckets: Dict[int, int] = collections.Counter()
    for c in counts:
        buckets[c.bit_length() - 1] += 1
    return {f"{2**b}-{2 ** (b + 1) - 1}": buckets[b] for b in sorted(buckets)}
