"""Preprocessing on a local Dask cluster: 1 worker against 2 workers, side by side in one run.

    python -m bench.scale_dask [--rows=4000] [--shards=8] [--smoke]

Writes `--distinct` photo-like 1024x768 JPEGs (bench_preprocess's generator) to a temporary
folder and a CSV of `--rows` file:// rows over them (ids and landmarks differ per row; the bytes
repeat, which does not change the per-row work: every row is read, decoded, resized and encoded).
The rows are planned into `--shards` train shards (`--num_shards`, `--val_fraction=0`). Then, on
the same input:
  direct    the DirectRunner in one process: the reference output
  1 worker  a fresh cluster (`dask scheduler` + `dask worker --nworkers 1 --nthreads 1`,
            tests/tools/dask_cluster.py), `--runner=dask --dask_address=...`
  2 workers the same with `--nworkers 2`
Each run is timed from submission to the report (plan phase, build phase, report); the
cluster's own start-up is not counted, and that includes each worker process importing Beam and
the pipeline's modules (done before the clock starts). `--fetch_threads=1` so that one worker process works one core
(the pipeline's decode threads release the GIL: with more threads one worker process alone
would use every core of this machine, and the comparison would be of nothing). Printed: the
seconds and rows/s of each run, the CPU seconds its worker processes used (on a machine shared
with other jobs the wall-clock ratio also measures their load; rows per worker CPU-second does
not), the speedup of 2 workers over 1, the build stage's Dask task
count (read off the translated graph, `dask_setup.bag_partitions`, against the shards built; and
the tasks the cluster ran, from `distributed.get_task_stream`), the build stage's seconds (first
task's start to last task's end: without `--tars` the plan runs in the submitting process, so
the build is the only job on the cluster) and the serial seconds around it (the plan, the job's
submission, the report), with the speedup Amdahl's law gives from them when each worker has a
core of its own (on a shared machine the measured ratio is lower), and whether each Dask output (shards, markers, failures.csv, stats.json, shard_index.json) is
byte-identical to the DirectRunner's. Target: a speedup of at least 1.6.

`--smoke`: 24 rows of 160x120 in 4 shards (seconds plus two clusters' start-up): the same
steps, for the test suite; its timing means nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

TARGET_SPEEDUP = 1.6


@dataclasses.dataclass(frozen=True)
class Setup:
    rows: int = 4000
    shards: int = 8
    distinct: int = 32
    width: int = 1024
    height: int = 768
    landmarks: int = 200


SMOKE = Setup(rows=24, shards=4, distinct=4, width=160, height=120, landmarks=6)


@dataclasses.dataclass(frozen=True)
class Result:
    workers: int
    seconds: float
    worker_cpu_s: float
    build_tasks: int
    shards: int
    identical: bool
    load_avg: float
    cluster_s: float = 0.0  # first task's start to last task's end on the cluster: the build stage
    driver_cpu_s: float = 0.0  # CPU seconds of the submitting process (plan, graph, submission, report)
    tasks_run: int = 0  # Dask partitions (tasks of the graph) the cluster ran during the run

    @property
    def serial_s(self) -> float:
        """The run's time outside the build stage: the plan, the job's submission, the report."""
        return max(self.seconds - self.cluster_s, 0.0)


def task_span(task_stream: Sequence[dict]) -> tuple:
    """(seconds from the first task's start to the last task's end, partitions run) in a
    `distributed.get_task_stream` record."""
    spans = [(s["start"], s["stop"]) for t in task_stream for s in t["startstops"] if s["action"] == "compute"]
    if not spans:
        return 0.0, 0
    # Bag tasks are keyed (layer name, partition); a fused chain also leaves an alias key per partition
    # and `compute` adds one gathering task: count partitions, not keys.
    partitions = {t["key"][1] for t in task_stream if isinstance(t["key"], tuple) and len(t["key"]) == 2}
    return max(stop for _, stop in spans) - min(start for start, _ in spans), len(partitions)


def make_input(root: pathlib.Path, setup: Setup) -> str:
    """The JPEGs and a CSV of `setup.rows` file:// rows over them; returns the CSV's path."""
    import numpy as np

    from bench.bench_preprocess import realistic_jpeg

    rng = np.random.default_rng(22)
    images = root / "images"
    images.mkdir(parents=True)
    paths = []
    for i in range(setup.distinct):
        path = images / f"{i:03d}.jpg"
        path.write_bytes(realistic_jpeg(rng, setup.width, setup.height))
        paths.append(path.as_uri())
    lines = ["id,url,landmark_id"]
    lines += [f"r{n:06d},{paths[n % setup.distinct]},{n % setup.landmarks}" for n in range(setup.rows)]
    csv_path = root / "rows.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return str(csv_path)


def first_url(csv_path: str) -> str:
    """The url of the CSV's first row."""
    with open(csv_path) as f:
        f.readline()
        return f.readline().split(",")[1]


def outputs(out: pathlib.Path) -> Dict[str, bytes]:
    """Every output file's bytes by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def flags(csv_path: str, out: pathlib.Path, setup: Setup) -> List[str]:
    return [f"--csv={csv_path}", f"--output_dir={out}", f"--num_shards={setup.shards}", "--val_fraction=0",
            "--fetch_threads=1"]


def build_tasks(argv: Sequence[str], stats: dict) -> int:
    """The Dask task count of the build stage, read off the build pipeline as the run made it."""
    import apache_beam as beam

    from pipelines import preprocess
    from pipelines.graph import dask_setup, shards

    cfg, beam_args = preprocess.parse_args(argv)
    options = preprocess.pipeline_options(cfg, beam_args, csv_bytes=0)
    p = beam.Pipeline(options=options)
    preprocess.build(p, cfg, [k.name for k in shards.all_keys(stats["shards"])])
    return dask_setup.bag_partitions(p, options)["Build/Build"]


def _cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def workers_cpu(address: str) -> float:
    """CPU seconds used so far by the cluster's worker processes, all together."""
    from distributed import Client

    with Client(address) as client:
        return sum(client.run(_cpu_seconds).values())


def _warm_worker(image_url: str) -> bool:
    """In a worker process: what its first build task would do once (import the DaskRunner's task
    code, unpickle a build DoFn, build and write a one-row shard: the codecs' and the writer's
    first-use set-up), into a scratch folder."""
    import shutil
    import tempfile

    import apache_beam.runners.dask.transform_evaluator  # noqa: F401  (runs every Beam task on Dask)
    from apache_beam.internal import pickler

    from pipelines.graph import transforms
    from pipelines.images.image import ImageConfig
    from pipelines.sources.csv_input import Row
    from pipelines.sources.fetch import FetchConfig

    scratch = tempfile.mkdtemp(prefix="warm-")
    try:
        dofn = pickler.loads(pickler.dumps(transforms._Build(scratch, FetchConfig(), ImageConfig(), 1)))
        dofn.setup()
        try:
            dofn.start_bundle()
            row = Row("warm", image_url, image_url, 0, "train", (0, 0))
            names = list(dofn.process((("train", 0, 1), "warm", [row], False)))
            dofn.finish_bundle()
        finally:
            dofn.teardown()
        return names == ["train-00000-of-00001.tfrecord"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def warm_up(address: str, image_url: str) -> None:
    """Warm every worker process (`_warm_worker`) and this process's DaskRunner imports: part of
    the cluster's start-up (about 8 s per fresh worker on the loaded 2-core machine), not of a run,
    so the 1-worker and the 2-worker runs both start warm."""
    import apache_beam.runners.dask.dask_runner  # noqa: F401  (dask.bag, distributed)
    from distributed import Client

    with Client(address) as client:
        warm = client.run(_warm_worker, image_url)
    if not all(warm.values()):
        raise RuntimeError(f"a worker could not process {image_url}: {warm}")


def run_on_dask(workers: int, csv_path: str, root: pathlib.Path, setup: Setup, reference: Dict[str, bytes]) -> Result:
    from pipelines import preprocess
    from tests.tools.dask_cluster import dask_cluster

    from distributed import Client

    out = root / f"dask-{workers}"
    with dask_cluster(workers=workers, threads=1) as address:
        warm_up(address, first_url(csv_path))
        argv = [*flags(csv_path, out, setup), "--runner=dask", f"--dask_address={address}"]
        with Client(address) as client:
            client.get_task_stream()  # starts the scheduler's task record, read after the run
        load, cpu = os.getloadavg()[0], workers_cpu(address)
        # No client of ours stays connected during the run: a second client in this process beside
        # the DaskRunner's delayed the job's end by ~3 s on the loaded machine.
        start, started, driver_cpu = time.perf_counter(), time.time(), _cpu_seconds()
        stats = preprocess.run(argv)
        seconds, driver_cpu = time.perf_counter() - start, _cpu_seconds() - driver_cpu
        cpu = workers_cpu(address) - cpu
        with Client(address) as client:
            stream = client.get_task_stream(start=started)
    n_shards = sum(stats["shards"].values())
    span, tasks = task_span(stream)
    return Result(workers, seconds, cpu, build_tasks(argv, stats), n_shards, outputs(out) == reference, load,
                  span, driver_cpu, tasks)


def run(smoke: bool = False, setup: Optional[Setup] = None) -> List[Result]:
    """The direct reference, then 1 and 2 Dask workers; returns the two Dask results."""
    from pipelines import preprocess

    setup = setup or (SMOKE if smoke else Setup())
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-scale-dask-"))
    try:
        csv_path = make_input(root, setup)
        direct = preprocess.run([*flags(csv_path, root / "direct", setup), "--direct_running_mode=in_memory",
                                 "--fetch_threads=4"])  # threads do not change the output
        if direct["written"] != setup.rows:
            raise RuntimeError(f"the reference run wrote {direct['written']} of {setup.rows} rows")
        reference = outputs(root / "direct")
        return [run_on_dask(workers, csv_path, root, setup, reference) for workers in (1, 2)]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(results: Sequence[Result], setup: Setup) -> str:
    one, two = results
    lines = [
        f"preprocessing on a local Dask cluster: {setup.rows} file:// rows of {setup.width}x{setup.height} JPEGs "
        f"in {one.shards} shards, {os.cpu_count()} cores",
        "| workers | s | rows/s | build stage s | serial s | workers' CPU-s | rows per worker CPU-s | build tasks "
        "| tasks run | shards | identical to DirectRunner | load avg at start |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    lines += [f"| {r.workers} | {r.seconds:.1f} | {setup.rows / r.seconds:.1f} | {r.cluster_s:.1f} | {r.serial_s:.1f} | "
              f"{r.worker_cpu_s:.1f} | {setup.rows / max(r.worker_cpu_s, 1e-9):.1f} | {r.build_tasks} | {r.tasks_run} | "
              f"{r.shards} | {r.identical} | {r.load_avg:.1f} |" for r in results]
    speedup = one.seconds / two.seconds
    lines.append(f"speedup 2 workers / 1 worker: {speedup:.2f}x (target >= {TARGET_SPEEDUP}x: "
                 f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})")
    if one.cluster_s and two.cluster_s:
        # Amdahl: the serial part stays, the build stage halves when the second worker gets a core of its own.
        bound = one.seconds / (one.serial_s + one.cluster_s / 2)
        lines.append(f"build stage alone: {one.cluster_s / two.cluster_s:.2f}x; serial share of the 1-worker run "
                     f"{one.serial_s / one.seconds:.1%} ({one.serial_s:.1f} s): with a free core per worker "
                     f"(Amdahl) 2 workers would give {bound:.2f}x")
    # The same from CPU seconds, which other jobs on the machine do not inflate: the submitting
    # process's CPU is the serial part, the workers' CPU the build (one core per worker process).
    by_cpu = (one.driver_cpu_s + one.worker_cpu_s) / (one.driver_cpu_s + two.worker_cpu_s / 2)
    lines.append(f"submitting process CPU-s: {one.driver_cpu_s:.1f} (1 worker), {two.driver_cpu_s:.1f} (2 workers); "
                 f"from CPU seconds, 2 workers on 2 free cores would give {by_cpu:.2f}x")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.scale_dask", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny input, seconds: checks the steps, not the speed")
    ap.add_argument("--rows", type=int, default=Setup.rows)
    ap.add_argument("--shards", type=int, default=Setup.shards)
    args = ap.parse_args(sys.argv[1:] if argv is None else list(argv))
    setup = SMOKE if args.smoke else Setup(rows=args.rows, shards=args.shards)
    results = run(setup=setup)
    print(report(results, setup), flush=True)


if __name__ == "__main__":
    main()
