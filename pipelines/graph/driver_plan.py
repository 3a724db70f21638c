"""The plan phase in the submitting process: CSV rows -> each shard's rows under `OUTPUT/_plan/`,
without a pipeline.

The plan is one light pass over the rows (no image is fetched). As a Beam pipeline on a cluster
it costs a job's start and a few task shuffles (six GroupByKeys), all serial time in front of
the build; here it is a dict pass in the process that submits the build, with the same
functions the pipeline's steps call (`transforms._keep_first`, `_group_key`, `_split_plan`,
`_plan_entries`, `_place`, `_Plan`), so it writes the same plan files and `plan.json`, byte for
byte (tests/unit/pipelines/test_driver_plan.py compares the two). Runs whenever no `--tars` are
given; with tars the plan stays a pipeline (`preprocess.plan`), whose tar reads run one task per
tar on the cluster.

Memory: every row (id, url, label, split) once, as the DirectRunner's plan pipeline held them;
about 0.4 GB at GLD's 1.2M rows.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Dict, List, Sequence, Tuple

from pipelines.graph import shard_plan
from pipelines.graph import transforms as tf
from pipelines.sources import layouts, storage
from pipelines.sources.csv_input import Failure, Row

# Plan files are small; on gs:// each write is a round trip, so they go out from a few threads.
WRITE_THREADS = 16


def _read(csv_paths: Sequence[str], mode: str, val_fraction: float,
          layout: layouts.Layout) -> Tuple[Dict[str, List[Row]], List[Failure], int]:
    """({id: its rows, in reading order}, bad_row failures, rows read)."""
    by_id: Dict[str, List[Row]] = {}
    failures: List[Failure] = []
    rows_in = 0
    for index, path in enumerate(csv_paths):
        for item in layouts.iter_rows(index, path, mode, val_fraction, layout):
            rows_in += 1
            if isinstance(item, Failure):
                failures.append(item)
            else:
                by_id.setdefault(item.image_id, []).append(item)
    return by_id, failures, rows_in


def plan(output_dir: str, csv_paths: Sequence[str], mode: str, val_fraction: float, layout: layouts.Layout,
         settings: str, num_shards: int, rows_per_shard: int, retry_failed: bool = False) -> Dict[str, int]:
    """Write the plan of `csv_paths` (what `preprocess.plan`'s pipeline writes); returns the
    counters that pipeline's steps count (rows_read, failed_bad_row, failed_duplicate_id,
    shards_skipped, rows_skipped, rows_retried)."""
    by_id, failures, rows_in = _read(csv_paths, mode, val_fraction, layout)
    counters = collections.Counter(rows_read=rows_in, failed_bad_row=len(failures))
    groups: Dict[Tuple, List] = collections.defaultdict(list)  # DedupById, then PlanShards' ByGroup
    for image_id, rows in by_id.items():
        for tag, value in tf._keep_first((image_id, rows)):
            if tag == tf.ROWS:
                groups[tf._group_key(value)].append(("row", value))
            else:
                failures.append(value)
                counters["failed_duplicate_id"] += 1
    del by_id
    sizes: Dict[str, List[Tuple[object, int]]] = collections.defaultdict(list)
    for (split, group), members in groups.items():
        sizes[split].append((group, len(members)))
    plans = [tf._split_plan((split, split_sizes), num_shards, rows_per_shard) for split, split_sizes in sizes.items()]
    counts = {split: split_plan.count for split, split_plan in plans}
    for split_plan in plans:
        for group_key, entry in tf._plan_entries(split_plan):
            if group_key in groups:
                groups[group_key].append(entry)
    by_shard: Dict[Tuple[str, int, int], List[Row]] = {
        (split, i, count): [] for split, count in counts.items() for i in range(count)}
    for group_key, members in groups.items():
        for shard, row in tf._place((group_key, members)):
            by_shard[shard].append(row)
    del groups
    skip = tf._Plan(output_dir, settings, retry_failed)
    tasks = []
    for shard, rows in sorted(by_shard.items()):
        for tag, value in skip.process((shard, rows)):
            if tag == "tasks":
                tasks.append(value)
                if value[3]:
                    counters["rows_retried"] += len(value[2])
            else:
                counters["shards_skipped"] += 1
                counters["rows_skipped"] += len(rows)
    with concurrent.futures.ThreadPoolExecutor(WRITE_THREADS) as pool:
        names = list(pool.map(lambda task: shard_plan.write_shard_plan(output_dir, task), tasks))
    storage.write_atomic(storage.join(shard_plan.plan_dir(output_dir), shard_plan.SUMMARY),
                         shard_plan.summary_bytes(counts.items(), failures, rows_in, names))
    return dict(sorted(counters.items()))
