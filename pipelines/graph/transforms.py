"""The preprocessing stages as labelled composite PTransforms, in two pipelines joined by the
shard plan's files (pipelines/graph/shard_plan.py):

    plan:   ReadCsvRows -> DedupById -> PlanShards -> shard_plan.WritePlan
            (without --tars, the same functions called in the submitting process: driver_plan.py)
    build:  Create(shard names) -> shard_plan.LoadShardPlans -> BuildShards
    then the report, merged from the shard markers in the submitting process (report.py)

Only light rows (id, url, label) travel between stages: bytes are fetched inside `BuildShards`,
which fetches and decodes one whole shard per element with a thread pool (fetching is I/O-bound
and the codecs release the GIL) and writes it from a writer thread while the next shard of the
bundle is built. So the runner never shuffles image bytes: a DirectRunner holds the row list,
not the dataset, in memory. Every
failure is handled per row and routed to a `failures` output or the shard's marker; nothing but
a storage error on the output itself can fail the job.

Built from what every runner executes alike, Beam's DaskRunner included (docs/scale.md): steps
with several outputs emit `(tag, value)` pairs split by `routing.SplitByTag` (no
`with_outputs`), and the plan gathers its inputs as main inputs, so it is the one final step
that everything leads to (no side inputs, no dead ends).
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import logging
import time
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines import schema
from pipelines.cli import console
from pipelines.graph import shards
from pipelines.images import decode_budget, image
from pipelines.sources import layouts
from pipelines.sources import fetch as fetch_lib
from pipelines.sources.csv_input import Failure, Row
from pipelines.images.errors import RowFailure
from pipelines.graph.routing import SplitByTag, tagged

NAMESPACE = "preprocess"
ROWS = "rows"
FAILURES = "failures"
PROGRESS_EVERY_S = 15.0

_LOG = logging.getLogger(__name__)


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


class _ParseCsv(beam.DoFn):
    def __init__(self, mode: str, val_fraction: float, layout: layouts.Layout) -> None:
        self._mode = mode
        self._val_fraction = val_fraction
        self._layout = layout

    def process(self, indexed_path: Tuple[int, str]) -> Iterator:
        index, path = indexed_path
        rows, bad = _counter("rows_read"), _counter("failed_bad_row")
        for item in layouts.iter_rows(index, path, self._mode, self._val_fraction, self._layout):
            rows.inc()
            if isinstance(item, Failure):
                bad.inc()
                yield tagged(FAILURES, item)
            else:
                yield tagged(ROWS, item)


class RowsAndFailures(NamedTuple):
    """The two outputs of `ReadCsvRows` and `DedupById`."""

    rows: beam.PCollection
    failures: beam.PCollection


def _split_rows(pairs) -> RowsAndFailures:
    routed = pairs | "Route" >> SplitByTag(ROWS, FAILURES)
    return RowsAndFailures(routed[ROWS], routed[FAILURES])


class ReadCsvRows(beam.PTransform):
    """CSV paths -> `Row`s (`.rows`) and `bad_row` `Failure`s (`.failures`), read in the
    given `pipelines.sources.layouts.Layout`."""

    def __init__(self, csv_paths: Sequence[str], mode: str = "auto", val_fraction: float = 0.1,
                 layout: layouts.Layout = layouts.Layout()) -> None:
        super().__init__()
        self._paths = list(csv_paths)
        self._mode = mode
        self._val_fraction = val_fraction
        self._layout = layout

    def expand(self, pbegin):
        return _split_rows(
            pbegin
            | "Paths" >> beam.Create(list(enumerate(self._paths)))
            | "Parse" >> beam.ParDo(_ParseCsv(self._mode, self._val_fraction, self._layout))
        )


def _keep_first(id_rows: Tuple[str, Sequence[Row]]) -> Iterator:
    _, rows = id_rows
    ordered = sorted(rows, key=lambda r: r.order)
    yield tagged(ROWS, ordered[0])
    for dup in ordered[1:]:
        _counter("failed_duplicate_id").inc()
        first = ordered[0].order
        yield tagged(
            FAILURES, Failure(dup.image_id, dup.url, "duplicate_id", f"first seen in csv {first[0]} line {first[1]}")
        )


class DedupById(beam.PTransform):
    """Keep the first occurrence of each id (by csv, then line) in `.rows`; later ones go to
    `.failures` as `duplicate_id`."""

    def expand(self, rows):
        return _split_rows(
            rows
            | "ById" >> beam.Map(lambda r: (r.image_id, r))
            | "Group" >> beam.GroupByKey()
            | "KeepFirst" >> beam.FlatMap(_keep_first)
        )


class _Plan(beam.DoFn):
    """A shard's rows -> a build task, unless an earlier run already finished that shard; with
    `retry_failed`, a finished shard whose marker holds transient failures gets a task that
    fetches only those rows again (`keep`: its other records and failures stay)."""

    def __init__(self, output_dir: str, settings: str, retry_failed: bool = False) -> None:
        self._output_dir = output_dir
        self._settings = settings
        self._retry_failed = retry_failed

    def process(self, keyed: Tuple[Tuple[str, int, int], Sequence[Optional[Row]]]) -> Iterator:
        key, members = shards.ShardKey(*keyed[0]), keyed[1]
        rows = sorted((r for r in members if r is not None), key=lambda r: r.image_id)
        digest = shards.fingerprint(self._settings, ((r.image_id, r.url, r.landmark_id) for r in rows))
        if shards.is_complete(self._output_dir, key, digest):
            retry = set()
            if self._retry_failed:
                retry = {f[0] for f in shards.transient_failures(shards.read_marker(self._output_dir, key))}
            if retry:
                _counter("rows_retried").inc(len(retry))
                yield tagged("tasks", (tuple(key), digest, [r for r in rows if r.image_id in retry], True))
                return
            _counter("shards_skipped").inc()
            _counter("rows_skipped").inc(len(rows))
            yield tagged("skipped", key.name)
            return
        yield tagged("tasks", (tuple(key), digest, rows, False))


# Test rows are grouped by a hash bucket of the id (not by landmark: they usually have none),
# so no single worker holds the whole split while they are placed.
_HASH_BUCKETS = 64


def _group_key(r: Row) -> Tuple[str, int]:
    """(split, landmark) for labelled splits, (split, hash bucket) otherwise."""
    if r.split in shards.LANDMARK_SPLITS:
        return (r.split, r.landmark_id)
    return (r.split, shards.stable_hash("bucket", r.image_id) % _HASH_BUCKETS)


def _split_plan(split_sizes: Tuple[str, Sequence[Tuple[int, int]]], num_shards: int, rows_per_shard: int):
    """(split, [(group, rows)]) -> (split, SplitPlan): whole landmarks, or a hashed shard count."""
    split, sizes = split_sizes
    if split in shards.LANDMARK_SPLITS:
        return split, shards.plan_landmarks(dict(sizes), num_shards, rows_per_shard)
    return split, shards.SplitPlan(shards.shard_count(sum(n for _, n in sizes), num_shards, rows_per_shard), {})


def _plan_entries(split_plan) -> Iterator:
    """One ((split, group), ("plan", shard count, pieces)) per group the split's rows fall in."""
    split, plan = split_plan
    groups = plan.pieces if split in shards.LANDMARK_SPLITS else range(_HASH_BUCKETS)
    for group in groups:
        yield (split, group), ("plan", plan.count, plan.pieces.get(group, []))


def _place(keyed: Tuple[Tuple[str, int], Sequence[Tuple]]) -> Iterator:
    """A group's rows + its plan entry -> ((split, shard, count), row) per row."""
    (split, _), tagged = keyed
    rows = {t[1].image_id: t[1] for t in tagged if t[0] == "row"}
    plans = [t for t in tagged if t[0] == "plan"]
    if not rows:
        return
    if not plans:
        raise RuntimeError(f"no shard plan for the rows of {keyed[0]}")  # a bug: plans come from these rows
    _, count, pieces = plans[0]
    if split in shards.LANDMARK_SPLITS:
        placed = shards.place_rows(list(rows), pieces)
    else:
        placed = [(image_id, shards.shard_index(image_id, count)) for image_id in rows]
    for image_id, shard in placed:
        yield (split, shard, count), rows[image_id]


class PlanShards(beam.PTransform):
    """Rows -> {"tasks": (key, fingerprint, rows, keep) per shard to build, "skipped": finished shard
    names, "counts": (split, shard count)}.

    Labelled splits keep each landmark's rows together (`shards.plan_landmarks`: whole landmarks
    per shard, balanced in rows; a landmark larger than a shard spans consecutive shards); the test
    split is spread by a hash of the id. Built from GroupByKeys only (no side inputs): rows per
    (split, landmark) are counted (CombinePerKey), each split's counts are grouped to plan it in
    one place (one element per split, a few hundred KB at 15k landmarks), the plan is joined back
    to the rows by (split, landmark) (Flatten + GroupByKey; only light rows travel) and the rows are
    grouped per shard. Every index of every split gets a task (an empty shard if no row lands in
    it), so each split's set of files is complete. The plan depends only on the input rows and
    `num_shards` / `rows_per_shard`, so a rerun on the same input makes the same plan.
    """

    def __init__(self, output_dir: str, settings: str, num_shards: int = 0, rows_per_shard: int = 2000,
                 retry_failed: bool = False) -> None:
        super().__init__()
        self._output_dir = output_dir
        self._settings = settings
        self._num_shards = num_shards
        self._rows_per_shard = rows_per_shard
        self._retry_failed = retry_failed

    def expand(self, rows):
        num, per = self._num_shards, self._rows_per_shard
        grouped = rows | "ByGroup" >> beam.Map(lambda r: (_group_key(r), ("row", r)))
        plans = (
            grouped
            | "One" >> beam.Map(lambda kv: (kv[0], 1))
            | "GroupSizes" >> beam.CombinePerKey(sum)
            | "BySplit" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
            | "SplitSizes" >> beam.GroupByKey()
            | "PlanSplit" >> beam.Map(_split_plan, num, per)
        )
        counts = plans | "ShardCount" >> beam.Map(lambda kv: (kv[0], kv[1].count))
        entries = plans | "PlanEntries" >> beam.FlatMap(_plan_entries)
        keyed = (
            (grouped, entries)
            | "RowsAndPlan" >> beam.Flatten()
            | "JoinPlan" >> beam.GroupByKey()
            | "Place" >> beam.FlatMap(_place)
        )
        every = counts | "EveryIndex" >> beam.FlatMap(lambda kv: [((kv[0], i, kv[1]), None) for i in range(kv[1])])
        planned = (
            (keyed, every)
            | "Merge" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "SkipFinished" >> beam.ParDo(_Plan(self._output_dir, self._settings, self._retry_failed))
            | "Route" >> SplitByTag("tasks", "skipped")
        )
        return {"tasks": planned["tasks"], "skipped": planned["skipped"], "counts": counts}


def process_row(row: Row, fetch_cfg: fetch_lib.FetchConfig, image_cfg: image.ImageConfig) -> Tuple:
    """("ok", Written, fetched bytes) or ("fail", reason, detail, fetched bytes); never raises."""
    nbytes = 0
    try:
        data = fetch_lib.fetch(row.location, "", fetch_cfg)
        nbytes = len(data)
        cost = decode_budget.decoded_pixels(data, image_cfg.image_size, image_cfg.max_pixels, image_cfg.min_side)
        with decode_budget.shared().hold(cost):  # bounds the decode memory of all threads together
            jpeg, height, width = image.process_image(data, image_cfg)
        serialized = schema.serialize(
            schema.ImageRecord(row.image_id, jpeg, height, width, row.landmark_id, row.url)
        )
        return ("ok", shards.Written(row.image_id, serialized, row.landmark_id), nbytes)
    except RowFailure as f:
        return ("fail", f.reason, f.detail, nbytes)
    except Exception as e:  # a bug or an exotic input: report the row, never fail the job
        _LOG.exception("unexpected error on %s", row.url)
        return ("fail", "decode_error" if nbytes else "fetch_error", f"{type(e).__name__}: {e}", nbytes)


class _Build(beam.DoFn):
    def __init__(
        self, output_dir: str, fetch_cfg: fetch_lib.FetchConfig, image_cfg: image.ImageConfig, threads: int
    ) -> None:
        self._output_dir = output_dir
        self._fetch_cfg = fetch_cfg
        self._image_cfg = image_cfg
        self._threads = threads

    def setup(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="fetch")
        # What is alive now (Beam, the libraries, this DoFn: ~160k objects) lives as long as the
        # worker. Frozen, it is no longer walked by every full collection that the per-image
        # allocations trigger (perf: ~1.7% of a run's CPU was in the collector, most of it there).
        gc.freeze()
        # One writer thread: a finished shard is written (on gs://, uploaded) while the bundle's
        # next shard is fetched and decoded, instead of the cores idling through the write.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self._writing: Optional[Tuple[shards.ShardKey, concurrent.futures.Future]] = None

    def teardown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._writer.shutdown(wait=True)  # a write under way completes (atomic either way)

    def start_bundle(self) -> None:
        self._writing = None  # a write left by a failed bundle finishes on its own; not ours

    def finish_bundle(self) -> None:
        self._wait_for_write()  # the bundle (and what it output) commits only once its shards are

    def _wait_for_write(self) -> None:
        """Wait for the shard being written, if any; its error, if any, fails the bundle."""
        if self._writing is None:
            return
        key, future = self._writing
        self._writing = None
        marker = future.result()
        _counter("shards_written").inc()
        _LOG.info("wrote %s: %d records, %d failures", key.name, marker["records"], len(marker["failures"]))

    def process(self, task: Tuple) -> Iterator[str]:
        """`task` = (key, fingerprint, rows[, keep]) as `PlanShards` makes it."""
        key_t, digest, rows = task[:3]
        keep = len(task) > 3 and task[3]
        key = shards.ShardKey(*key_t)
        fetched, written = _counter("fetched"), _counter("written")
        records: List[shards.Written] = []
        failures: List[Tuple[str, str, str, str]] = []
        source_bytes = 0
        if keep:  # --retry_failed: the shard keeps what it has; only `rows` are fetched again
            records, failures, source_bytes = shards.kept_for_retry(self._output_dir, key, (r.image_id for r in rows))
            failures = [tuple(f) for f in failures]
        started = last_log = time.monotonic()
        outcomes = self._pool.map(process_row, rows, itertools.repeat(self._fetch_cfg), itertools.repeat(self._image_cfg))
        for done, (row, outcome) in enumerate(zip(rows, outcomes), start=1):
            source_bytes += outcome[-1]
            if outcome[-1]:
                fetched.inc()
            if outcome[0] == "ok":
                records.append(outcome[1])
                written.inc()
            else:
                failures.append((row.image_id, row.url, outcome[1], outcome[2]))
                _counter(f"failed_{outcome[1]}").inc()
            if time.monotonic() - last_log > PROGRESS_EVERY_S:
                last_log = time.monotonic()
                _LOG.info("%s, %d written, %d failed", console.meter(key.name, done, len(rows), last_log - started, "row"),
                          len(records), len(failures))
        # At most one shard waits for its write while the next is built (two shards' records in
        # memory). The name goes out now; the bundle commits it only after `finish_bundle` has
        # waited for the write, so the job (and the report after it) ends only after every write.
        self._wait_for_write()
        self._writing = (key, self._writer.submit(
            shards.write_shard, self._output_dir, key, records, failures, digest, source_bytes))
        yield key.name


class BuildShards(beam.PTransform):
    """Build tasks -> names of the shards written (fetch, decode, resize, encode, write, mark)."""

    def __init__(
        self,
        output_dir: str,
        fetch_cfg: fetch_lib.FetchConfig = fetch_lib.FetchConfig(),
        image_cfg: image.ImageConfig = image.ImageConfig(),
        threads: int = 16,
    ) -> None:
        super().__init__()
        self._dofn = _Build(output_dir, fetch_cfg, image_cfg, threads)

    def expand(self, tasks):
        # Reshuffle spreads the shards over workers (breaks fusion on Dataflow; a no-op on Dask,
        # where the Create of shard names already gives one task per shard).
        return tasks | "Spread" >> beam.Reshuffle() | "Build" >> beam.ParDo(self._dofn)
