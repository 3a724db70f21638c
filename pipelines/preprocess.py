"""`python -m pipelines.preprocess --csv=A.csv[,B.csv] --output_dir=DIR [flags] [Beam flags]`

Google-Landmarks CSVs -> DIR/{train,val,test}-NNNNN-of-NNNNN.tfrecord, DIR/failures.csv,
DIR/stats.json. Flags this module does not know go to Beam, so any runner works
(`--runner=DataflowRunner --project=... --region=... --temp_location=gs://...`). Without
`--runner` it runs on the DirectRunner: in one process for small inputs (start-up matters to
callers such as `indexer.predict`), else in multi-processing mode over every core; pass
`--direct_running_mode` / `--direct_num_workers` to choose yourself. `--runner=dask` runs on
Beam's DaskRunner: on `--dask_address=tcp://HOST:PORT`, else on a local cluster of
`--dask_workers` processes started for the run (docs/scale.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from pipelines.cli import console, interrupt, output_guard, preflight, run_tempdir
from pipelines.graph import dask_setup, driver_plan, report, shard_plan
from pipelines.images import image
from pipelines.sources import csv_input, fetch, layouts, storage, tar_source
from pipelines.cli.cli_errors import InputError, run_argv
from pipelines.sources.tar_locate import LocateInTars
from pipelines.graph.transforms import NAMESPACE, BuildShards, DedupById, PlanShards, ReadCsvRows

_LOG = logging.getLogger("pipelines.preprocess")
_REPO_SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
PROGRESS_EVERY_MS = 30_000


@dataclasses.dataclass(frozen=True)
class Config:
    """The flags of this stage (Beam's own flags are passed through untouched)."""

    csv: Tuple[str, ...]
    output_dir: str
    image_size: int = image.ImageConfig.image_size
    val_fraction: float = 0.1
    split: str = "auto"
    num_shards: int = 0
    rows_per_shard: int = 2000
    jpeg_quality: int = image.ImageConfig.jpeg_quality
    min_side: int = image.ImageConfig.min_side
    max_pixels: int = image.ImageConfig.max_pixels
    fetch_timeout: float = fetch.FetchConfig.timeout_s
    fetch_retries: int = fetch.FetchConfig.retries
    backoff_s: float = fetch.FetchConfig.backoff_s
    fetch_threads: int = 16
    in_memory_below_rows: int = 5000
    dask_address: str = ""
    dask_workers: int = 0
    layout: str = "urls"
    images_root: str = ""
    tars: Tuple[str, ...] = ()
    tar_md5: Tuple[str, ...] = ()
    overwrite: bool = False
    retry_failed: bool = False

    def input_layout(self) -> layouts.Layout:
        return layouts.Layout(self.layout, self.images_root, bool(self.tars))

    def image_config(self) -> image.ImageConfig:
        return image.ImageConfig(self.image_size, self.min_side, self.max_pixels, self.jpeg_quality)

    def fetch_config(self) -> fetch.FetchConfig:
        return fetch.FetchConfig(self.fetch_timeout, self.fetch_retries, self.backoff_s)

    def settings(self) -> Dict[str, object]:
        """What shapes the records' bytes and placement (recorded in stats.json and shard markers)."""
        return {
            "image_size": self.image_size,
            "jpeg_quality": self.jpeg_quality,
            "min_side": self.min_side,
            "max_pixels": self.max_pixels,
            "split": self.split,
            "val_fraction": self.val_fraction,
        }


def parse_args(argv: Sequence[str]) -> Tuple[Config, List[str]]:
    """(our config, the remaining flags for Beam)."""
    d = Config(csv=(), output_dir="")
    ap = argparse.ArgumentParser(prog="python -m pipelines.preprocess", description=__doc__.split("\n\n")[0],
                                 allow_abbrev=False)
    ap.add_argument("--csv", required=True, help="comma-separated CSV paths (local or gs://)")
    ap.add_argument("--output_dir", required=True, help="local or gs:// folder for shards and reports")
    ap.add_argument("--image_size", type=int, default=d.image_size, help="shorter side of stored images (never upscaled)")
    ap.add_argument("--val_fraction", type=float, default=d.val_fraction, help="share of labelled rows sent to val")
    ap.add_argument("--split", choices=csv_input.SPLIT_MODES, default=d.split)
    ap.add_argument("--num_shards", type=int, default=d.num_shards, help="shards per split; 0 = from --rows_per_shard")
    ap.add_argument("--rows_per_shard", type=int, default=d.rows_per_shard)
    ap.add_argument("--jpeg_quality", type=int, default=d.jpeg_quality)
    ap.add_argument("--min_side", type=int, default=d.min_side, help="smaller sources fail as too_small")
    ap.add_argument("--max_pixels", type=int, default=d.max_pixels, help="larger declared sizes fail as too_large")
    ap.add_argument("--fetch_timeout", type=float, default=d.fetch_timeout, help="seconds per connect/read")
    ap.add_argument("--fetch_retries", type=int, default=d.fetch_retries, help="extra tries on transient failures")
    ap.add_argument("--backoff_s", type=float, default=d.backoff_s, help="first retry delay (doubles each try)")
    ap.add_argument("--fetch_threads", type=int, default=d.fetch_threads, help="concurrent rows per worker")
    ap.add_argument(
        "--in_memory_below_rows", type=int, default=d.in_memory_below_rows,
        help="DirectRunner default: one process below this many (estimated) rows or on <= 2 cores, else multi-processing",
    )
    ap.add_argument("--dask_address", default=d.dask_address, help="--runner=dask: scheduler address")
    ap.add_argument(
        "--dask_workers", type=int, default=d.dask_workers,
        help="--runner=dask without an address: local worker processes to start (0 = one per core)",
    )
    ap.add_argument("--layout", choices=layouts.LAYOUTS, default=d.layout,
                    help="urls: id,url[,landmark_id]; kaggle: id[,landmark_id] + a/b/c/<id>.jpg tree; "
                         "gldv2_clean: landmark_id,images (docs/preprocess.md)")
    ap.add_argument("--images_root", default=d.images_root,
                    help="kaggle/gldv2_clean: the a/b/c/<id>.jpg tree (default: CSV folder + train/ or test/)")
    ap.add_argument("--tars", default="", help="comma-separated GLDv2 tars or globs (local or gs://): photos by id")
    ap.add_argument("--tar_md5", default="", help="comma-separated md5 lists (md5sum format) checking --tars")
    ap.add_argument("--overwrite", action="store_true",
                    help="let this run replace, in --output_dir, the shards of a run on other CSVs")
    ap.add_argument("--retry_failed", action="store_true",
                    help="fetch again the rows an earlier run failed transiently (timeout, connection_error, "
                         "http_429, http_5xx)")
    args, beam_args = ap.parse_known_args(list(argv))
    if not 0 <= args.val_fraction < 1:
        ap.error("--val_fraction must be in [0, 1)")
    if args.image_size < 1 or args.fetch_threads < 1 or args.rows_per_shard < 1 or args.num_shards < 0:
        ap.error("--image_size, --fetch_threads, --rows_per_shard must be >= 1 and --num_shards >= 0")
    if args.dask_workers < 0:
        ap.error("--dask_workers must be >= 0")
    fields = {f.name for f in dataclasses.fields(Config)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["csv"] = tuple(p.strip() for p in args.csv.split(",") if p.strip())
    try:
        values["tars"] = tuple(tar_source.expand_tars(args.tars)) if args.tars else ()
        values["tar_md5"] = tuple(tar_source.expand_tars(args.tar_md5)) if args.tar_md5 else ()
    except ValueError as e:
        ap.error(f"--tars / --tar_md5: {e}")
    if values["tar_md5"] and not values["tars"]:
        ap.error("--tar_md5 checks --tars: give the tars too")
    return Config(**values), beam_args


def _check_inputs(cfg: Config) -> int:
    """Fail early, with the path, on a missing CSV or a header without id/url, inputs that are not
    regular files (a FIFO would hang the run), unreadable md5 lists, a missing --images_root or
    an output folder that cannot be written; returns total CSV bytes."""
    if not cfg.csv:
        raise InputError("--csv names no file")
    preflight.check_regular_files(cfg.csv, "--csv")
    preflight.check_regular_files(cfg.tars, "--tars", missing_ok=True)
    preflight.check_md5_lists(cfg.tar_md5)
    total = 0
    for path in cfg.csv:
        try:
            labelled = layouts.check_header(path, cfg.input_layout())
            _check_images_root(cfg, path, labelled)
            total += storage.size(path)
        except FileNotFoundError:
            raise InputError(f"{path}: does not exist (--csv)") from None
        except ValueError as e:
            raise InputError(str(e)) from None
    return total


def _check_images_root(cfg: Config, csv_path: str, labelled: bool) -> None:
    """A kaggle / gldv2_clean run reading photos from a local tree refuses a tree that does not
    exist (else every row would fail as not_found)."""
    if cfg.layout == "urls" or cfg.tars:
        return
    root = layouts.images_root(cfg.input_layout(), csv_path, labelled)
    if not storage.is_gcs(root) and not os.path.isdir(root):
        how = "--images_root" if cfg.images_root else f"--images_root, by default beside {csv_path}"
        raise InputError(f"{root}: no such folder ({how})")


def _flag_given(beam_args: Sequence[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in beam_args)


def default_direct_mode(csv_bytes: int, cores: int, in_memory_below_rows: int) -> str:
    """The DirectRunner mode of a run that names none.

    One process (`in_memory`) for small inputs (about 50 bytes per GLD row), which skip the worker
    processes' start-up (~2.5 s: each imports Beam), and on two cores or fewer: there the threads
    of one process already keep both cores busy, since fetch (libcurl), decode, resize and encode
    release the GIL (6,000 rows over loopback HTTP, alternating runs on this 2-core VM: 30.3 / 30.9 s
    in one process, 31.4 / 33.8 s with two worker processes). Otherwise one worker process per
    core (`multi_processing`): the Python share of each image's work holds the GIL, which would
    cap a single process at a few cores.
    """
    if csv_bytes // 50 < in_memory_below_rows or cores <= 2:
        return "in_memory"
    return "multi_processing"


def pipeline_options(cfg: Config, beam_args: List[str], csv_bytes: int) -> PipelineOptions:
    """Beam options: the caller's flags, plus DirectRunner defaults sized to the input."""
    args = list(beam_args)
    runner = PipelineOptions(args).view_as(StandardOptions).runner
    if runner is None:
        args.append("--runner=DirectRunner")
    if runner in (None, "DirectRunner", "direct"):
        if not _flag_given(args, "allow_unsafe_triggers"):
            # Beam 2.77's DirectRunner first tries the PrismRunner, fetching its binary from GitHub on
            # every run: offline that costs ~0.35 s of CPU per run before it falls back; online it
            # would run on Prism, which ignores --direct_running_mode. It skips Prism for pipelines
            # with this flag; our graph is bounded with default triggers, so nothing else changes.
            args.append("--allow_unsafe_triggers")
        if not _flag_given(args, "direct_running_mode"):
            cores = len(os.sched_getaffinity(0))
            mode = default_direct_mode(csv_bytes, cores, cfg.in_memory_below_rows)
            args.append(f"--direct_running_mode={mode}")
            if mode == "multi_processing" and not _flag_given(args, "direct_num_workers"):
                args.append(f"--direct_num_workers={cores}")
    options = PipelineOptions(args)
    if dask_setup.is_dask(runner):
        dask_setup.configure(options, cfg.dask_address)
        dask_setup.one_task_per_element(options)
    elif cfg.dask_address or cfg.dask_workers:
        raise SystemExit("--dask_address / --dask_workers need --runner=dask")
    preflight.refuse_unknown_flags(args)  # after configure: the Dask options class is loaded
    if runner and "Dataflow" in runner:
        setup = options.view_as(SetupOptions)
        if not setup.setup_file and not _flag_given(args, "sdk_container_image") and os.path.exists(_REPO_SETUP):
            setup.setup_file = _REPO_SETUP  # workers install this package (TF-free base requirements)
    return options


def plan(p: beam.Pipeline, cfg: Config) -> beam.pvalue.PCollection:
    """The plan phase's graph (pipelines/graph/shard_plan.py): rows -> each shard's rows under
    OUTPUT/_plan/; returns the single-element PCollection of plan.json's path."""
    parsed = p | "ReadCsv" >> ReadCsvRows(cfg.csv, cfg.split, cfg.val_fraction, cfg.input_layout())
    unique = parsed.rows | "Dedup" >> DedupById()
    rows, failures = unique.rows, [parsed.failures, unique.failures]
    if cfg.tars:
        located = rows | "LocateInTars" >> LocateInTars(cfg.tars, cfg.tar_md5)
        rows = located.rows
        failures.append(located.failures)
    planned = rows | "Plan" >> PlanShards(
        cfg.output_dir, json.dumps(cfg.settings(), sort_keys=True), cfg.num_shards, cfg.rows_per_shard,
        cfg.retry_failed,
    )
    input_failures = tuple(failures) | "InputFailures" >> beam.Flatten()
    rows_in = (
        (parsed.rows, parsed.failures)
        | "AllRows" >> beam.Flatten()
        # without_defaults: an empty input gives no count (0 is read) instead of a default
        # injected through a side input, which the DaskRunner does not run as a dependency.
        | "CountRows" >> beam.CombineGlobally(beam.combiners.CountCombineFn()).without_defaults()
    )
    return {"tasks": planned["tasks"], "counts": planned["counts"], "failures": input_failures, "rows_in": rows_in} | (
        "WritePlan" >> shard_plan.WritePlan(cfg.output_dir)
    )


def build(p: beam.Pipeline, cfg: Config, names: Sequence[str]) -> beam.pvalue.PCollection:
    """The build phase's graph: one element per shard to build (`names`, from the plan), each
    built from its rows in the plan; returns the names of the shards written. Its last step is
    the build itself (on Dask one task per shard and nothing after it: no shuffle); the report
    is merged from the shard markers by the submitting process once the job is done (`finish`)."""
    return (
        p
        | "Shards" >> beam.Create(sorted(names))
        | "LoadPlan" >> shard_plan.LoadShardPlans(cfg.output_dir)
        | "Build" >> BuildShards(cfg.output_dir, cfg.fetch_config(), cfg.image_config(), cfg.fetch_threads)
    )


def finish(cfg: Config) -> dict:
    """failures.csv, stats.json and shard_index.json from plan.json and every shard's marker
    (`report.finalize`): a merge of small files in the submitting process, after the build."""
    summary = shard_plan.read_summary(cfg.output_dir)
    return report.finalize(cfg.output_dir, summary[shard_plan.COUNTS], summary[shard_plan.FAILURES],
                           summary[shard_plan.ROWS_IN], cfg.settings())


def plan_in_driver(cfg: Config) -> Dict[str, int]:
    """The plan phase without a pipeline (pipelines/graph/driver_plan.py); returns its counters."""
    return driver_plan.plan(
        cfg.output_dir, cfg.csv, cfg.split, cfg.val_fraction, cfg.input_layout(),
        json.dumps(cfg.settings(), sort_keys=True), cfg.num_shards, cfg.rows_per_shard, cfg.retry_failed,
    )


def _counters(result) -> Dict[str, int]:
    try:
        metrics = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # some runners cannot report metrics
        return {}
    totals: Dict[str, int] = {}
    for c in metrics["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + (value or 0)
    return dict(sorted(totals.items()))


def _wait(result, poll: bool = True) -> None:
    """Wait for the job, logging its counters every 30 s on runners that run asynchronously and
    report metrics (`poll`; the DaskRunner reports none, and its result fails the job when a
    wait with a duration times out)."""
    if not poll:
        result.wait_until_finish()
    while not PipelineState.is_terminal(result.state):
        result.wait_until_finish(duration=PROGRESS_EVERY_MS)
        if not PipelineState.is_terminal(result.state):
            _LOG.info("progress: %s", _counters(result))
    if result.state != PipelineState.DONE:
        raise RuntimeError(f"pipeline ended in state {result.state}")


def summary(stats: dict, counters: Dict[str, int], seconds: float, output_dir: str) -> str:
    """The one-screen report printed at the end."""
    lines = [
        f"preprocess: {stats['rows_in']} rows in {seconds:.1f} s -> {output_dir}",
        f"  written  {stats['written']:>9}  " + "  ".join(f"{k}={v}" for k, v in stats["written_by_split"].items()),
        f"  failed   {stats['failed']:>9}  (failures.csv)",
    ]
    lines += [f"    {reason:<18}{n:>9}" for reason, n in sorted(stats["failed_by_reason"].items(), key=lambda kv: -kv[1])]
    lines += [
        "  shards   " + "  ".join(f"{k}={v}" for k, v in stats["shards"].items())
        + (f"  (this run: {counters.get('shards_written', 0)} written, {counters.get('shards_skipped', 0)} already done)"
           if counters else ""),
        f"  landmarks {stats['landmarks']}, bytes written {stats['bytes_written'] / 1e6:.1f} MB, "
        f"fetched {stats['source_bytes'] / 1e6:.1f} MB",
        f"  every row accounted for: {stats['accounted_for']}",
        "  counters: " + (", ".join(f"{k}={v}" for k, v in counters.items()) or "(none reported by the runner)"),
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _local_dask_cluster(cfg: Config, options: PipelineOptions) -> Iterator[None]:
    """On a Dask run without a scheduler address, a local cluster for the run's duration."""
    if dask_setup.has_address(options):
        yield
        return
    with dask_setup.local_cluster(cfg.dask_workers) as address:
        dask_setup.configure(options, address)
        yield


def _run_pipeline(options: PipelineOptions, graph: Callable[[beam.Pipeline], object], on_dask: bool) -> Dict[str, int]:
    """Run one pipeline made by `graph` to its end; returns its counters (none on Dask)."""
    p = beam.Pipeline(options=options)
    graph(p)
    result = p.run()
    try:
        _wait(result, poll=not on_dask)
    finally:
        if on_dask:
            dask_setup.close_client(result)
    return _counters(result)


def run(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the pipeline; returns stats.json's content."""
    cfg, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    csv_bytes = _check_inputs(cfg)
    options = pipeline_options(cfg, beam_args, csv_bytes)
    on_dask = dask_setup.is_dask(options.view_as(StandardOptions).runner)
    if on_dask and dask_setup.scheduler_address(options):
        preflight.check_dask_address(dask_setup.scheduler_address(options))
    preflight.check_output_dir(cfg.output_dir)
    if not cfg.overwrite:
        output_guard.refuse_other_splits(cfg.output_dir, cfg.csv, cfg.split, cfg.val_fraction, cfg.input_layout())
        output_guard.refuse_other_inputs(cfg.output_dir, cfg.csv)
    storage.make_dirs(cfg.output_dir)
    output_guard.record_inputs(cfg.output_dir, cfg.csv)
    start = time.monotonic()
    with run_tempdir.private_tempdir():  # Beam's local temp folders go with the run
        with _local_dask_cluster(cfg, options) if on_dask else contextlib.nullcontext():
            if cfg.tars:  # the tar reads run on the runner, one task per tar
                counters = _run_pipeline(options, lambda p: plan(p, cfg), on_dask)
            else:
                counters = plan_in_driver(cfg)
            planned = shard_plan.read_summary(cfg.output_dir)
            to_build = planned[shard_plan.BUILD]
            built = _run_pipeline(options, lambda p: build(p, cfg, to_build), on_dask) if to_build else {}
            counters = {k: counters.get(k, 0) + built.get(k, 0) for k in {*counters, *built}}
            # A runner without metrics (Dask) reports neither; the job succeeded, so every task wrote its shard.
            counters.setdefault("shards_written", len(to_build))
            counters.setdefault("shards_skipped", sum(planned[shard_plan.COUNTS].values()) - len(to_build))
            counters = dict(sorted(counters.items()))
    stats = finish(cfg)
    shard_plan.remove(cfg.output_dir)
    print(summary(stats, counters, time.monotonic() - start, cfg.output_dir), flush=True)
    return stats


class _WorkerLogFilter(logging.Filter):
    """Multi-processing DirectRunner workers' log lines arrive as protos through one Beam logger:
    keep ours (progress) and errors, reduced to their message."""

    _MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
    _LOCATION = re.compile(r'log_location: "([^"]*)"')

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        message, location = self._MESSAGE.search(text), self._LOCATION.search(text)
        if not message:
            return record.levelno >= logging.WARNING
        if "/pipelines/" not in (location.group(1) if location else "") and record.levelno < logging.ERROR:
            return False
        record.msg, record.args = "worker: " + message.group(1), ()
        return True


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    console.plain_logging()
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    worker_logs = logging.getLogger("apache_beam.runners.portability.local_job_service")
    worker_logs.setLevel(logging.INFO)
    worker_logs.addFilter(_WorkerLogFilter())
    with interrupt.stop_on_signals("pipelines.preprocess", run_tempdir.remove_active):
        run_argv("pipelines.preprocess", run)


if __name__ == "__main__":
    main()
