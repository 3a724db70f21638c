"""Benchmark: the preprocessing pipeline against a bare Python loop and against img2dataset, one run.

All of it runs on the same rows: `--images` distinct realistic 1024x768 JPEGs generated locally
(smooth colour fields, edges and sensor-like noise, ~300 KB each), listed `--repeat` times under
distinct ids so the per-image work dominates. In order:
1. the per-stage CPU cost per image of the pipeline's own code (`bench.stage_costs`, one thread),
   with, on the same images in the same turns, the bare loop (below) and img2dataset's codec
   calls (`bench.img2dataset_peer.codec_calls`: what its own per-image cost cannot go under);
2. the bare loop alone: what a user would write with Pillow alone on one core (read the file,
   reduced-size `draft` decode, resize the shorter side to 256 bilinear, encode JPEG q90), timed
   on the first `--bare_rows` rows of the same list, before and after step 3 (its per-core
   rate, and how far the host drifted between the two: on this shared 2-core VM the same loop
   ran at 8.2 ms/image on one core and 11.3 ms on the other in the same minute);
3. the pipeline as a user runs it (`python -m pipelines.preprocess` in a subprocess) on the
   local files, in each DirectRunner mode asked for, on the same cores and in the same seconds
   as one bare loop per core (`--coschedule=1`, the default): the kernel interleaves both every
   few milliseconds, so both see the same host, whatever a neighbour does to it. Images per
   CPU-second of each over those seconds; the pipeline's fixed start-up (interpreter, Beam
   import, graph), measured with a one-row run just before (co-scheduled too), is subtracted
   from its CPU (the loop has none) and reported apart. This is the figure against the bare loop. With
   `--coschedule=0` the pipeline runs alone and the ratio uses the mean of the two bare runs of
   step 2 (exposed to the drift above);
4. the same urls served over HTTP from 127.0.0.1 (a keep-alive server in this process, so its
   CPU is in neither measured tree): the pipeline in the DirectRunner mode it picks itself for
   that CSV on this machine (`pipelines.preprocess.default_direct_mode`: one process on 2 cores;
   `--http_mode` to force one) and img2dataset (installed by this benchmark into a throwaway virtualenv, never a project
   dependency; skipped with a message if it cannot be installed) in ABBA order for
   `--peer_rounds=2` (pipeline, img2dataset, img2dataset, pipeline; round k runs the pair in
   the opposite order to round k-1; 1 = one pipeline run then one img2dataset run). Every full
   run is preceded by its own one-row start-up run, so each (start-up, run) unit is the same and
   the order stays symmetric for the steady figures too. The primary ratio is that of the
   tools' mean whole-run images/s; the ratio within each adjacent pair shows the spread. ABBA
   cancels a linear drift of the host's speed over the four runs.
CPU = user+sys of the run's whole process tree. Per core = rate / cores the run may use; the bare
loop is one core. On a machine shared with other jobs the wall-clock rates of separate
measurements see different contention, the CPU-time rates less (but they drift too): read the
co-scheduled ratios first, and the bare runs' drift and the pairs' spread before trusting a ratio
near its target.
Targets (issue 12): pipeline >= 1.2x the bare loop per CPU-second, >= 2x img2dataset's images/s
over the whole run (wall, start-up included); the last lines print both as the headline.

    python -m bench.bench_preprocess [--images=300] [--repeat=20] [--modes=in_memory,multi_processing]
                                     [--bare_rows=1500] [--peer=img2dataset|none] [--peer_rounds=2]
                                     [--coschedule=1] [--http_mode=in_memory|multi_processing]
                                     [--workdir=DIR] [--smoke]

`--smoke`: the same on 8 rows over 4 JPEGs, one core, the in-memory mode only, no img2dataset, in about
ten seconds (`bench.smoke`).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple, TypeVar

import numpy as np
import psutil
from PIL import Image

from bench import img2dataset_peer, loopback, smoke, stage_costs
from pipelines import preprocess


def realistic_jpeg(rng: np.random.Generator, width: int = 1024, height: int = 768) -> bytes:
    """A photo-like JPEG: a smooth random colour field, edges, and pixel noise (q92)."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 40 * np.sign(np.sin(xx / rng.uniform(7, 30) + yy / rng.uniform(9, 40)))[..., None]
    noise = rng.normal(0, 9, (height, width, 3))
    img = np.clip(field + stripes + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def bare_image(path: str, image_size: int = 256) -> None:
    """What a user would write with Pillow alone: read, draft decode, resize, encode JPEG q90."""
    with open(path, "rb") as f:
        data = f.read()
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    scale = image_size / min(w, h)
    size = (round(w * scale), round(h * scale))
    im.draft("RGB", size)
    im.load()
    if im.mode != "RGB":
        im = im.convert("RGB")
    im = im.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)


def bare_loop(paths: List[str]) -> Tuple[float, float]:
    """(wall, CPU) seconds of `bare_image` on every path, on one core (this thread's CPU)."""
    start, cpu = time.perf_counter(), time.thread_time()
    for path in paths:
        bare_image(path)
    return time.perf_counter() - start, time.thread_time() - cpu


def bare_while(paths: List[str], running: Callable[[], bool]) -> Tuple[int, float, float]:
    """(images, wall, CPU seconds) of `bare_image` over `paths`, cycled while `running()`."""
    start, cpu, done = time.perf_counter(), time.thread_time(), 0
    while running():
        bare_image(paths[done % len(paths)])
        done += 1
    return done, time.perf_counter() - start, time.thread_time() - cpu


def run_tree(cmd: List[str], what: str, cpus: Optional[Set[int]] = None) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it started), on `cpus` only
    when given.

    CPU is sampled per process of the tree every 50 ms (Beam's multi-processing workers are not
    waited for by their parent, so `RUSAGE_CHILDREN` would miss them); a process's last <50 ms
    may be missed.
    """
    log = tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=pin)
    root = psutil.Process(proc.pid)
    cpu: Dict[int, float] = {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        log.seek(0)
        raise SystemExit(f"{what} failed:\n{log.read()[-3000:]}")
    return wall, sum(cpu.values())


def run_pipeline(csv_path: str, out_dir: str, mode: str, cores: int,
                 cpus: Optional[Set[int]] = None) -> Tuple[float, float, int]:
    """(wall, CPU seconds, images written) of one `pipelines.preprocess` run into a fresh `out_dir`."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={out_dir}",
        f"--direct_running_mode={mode}", f"--direct_num_workers={cores}",
    ]
    wall, cpu = run_tree(cmd, "pipeline", cpus)
    with open(os.path.join(out_dir, "stats.json")) as f:
        return wall, cpu, int(json.load(f)["written"])


def run_img2dataset(exe: str, url_list: str, out_dir: str, rows: int, cores: int) -> Tuple[float, float, int]:
    """(wall, CPU seconds, images written) of one img2dataset run into a fresh `out_dir`."""
    shutil.rmtree(out_dir, ignore_errors=True)
    wall, cpu = run_tree(img2dataset_peer.command(exe, url_list, out_dir, rows, cores, 16), "img2dataset")
    return wall, cpu, img2dataset_peer.successes(out_dir)


class Timed(NamedTuple):
    """A measured run: `rows` images, whole-run and start-up (one-row run) wall and CPU seconds."""

    name: str
    rows: int
    written: int
    wall: float
    cpu: float
    startup: float
    startup_cpu: float
    cores: int

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    @property
    def subtract_startup(self) -> bool:
        """False when the run was too short for "minus the one-row run" to mean anything."""
        return self.wall - self.startup > 0.25 * self.wall and self.cpu - self.startup_cpu > 0.25 * self.cpu

    @property
    def steady(self) -> float:
        return self.rows / (self.wall - self.startup) if self.subtract_startup else self.rate

    @property
    def per_cpu(self) -> float:
        return self.rows / (self.cpu - self.startup_cpu) if self.subtract_startup else self.rows / self.cpu

    @property
    def per_cpu_whole(self) -> float:
        """Images per CPU-second of the whole run, start-up included."""
        return self.rows / self.cpu

    def line(self) -> str:
        return (
            f"{self.name:<34} wall {self.wall:6.1f} s (start-up {self.startup:4.1f} s): whole run {self.rate:6.1f} images/s, "
            f"steady {self.steady:6.1f}/s = {self.steady / self.cores:6.1f}/core; {self.per_cpu:6.1f} per CPU-second"
            f" ({self.per_cpu_whole:.1f} whole run)"
            + ("" if self.subtract_startup else "  [run too short: start-up not subtracted]")
            + ("" if self.written == self.rows else f"  [ONLY {self.written}/{self.rows} WRITTEN]")
        )


def timed(name: str, rows: int, cores: int, run: Callable[[bool], Tuple[float, float, int]]) -> Timed:
    """`run(True)` (the one-row start-up run) then `run(False)` (the whole list), printed as one `Timed`."""
    s_wall, s_cpu, _ = run(True)
    wall, cpu, written = run(False)
    return shown(Timed(name, rows, written, wall, cpu, s_wall, s_cpu, cores))


Shown = TypeVar("Shown", "Timed", "Bare")


def shown(result: Shown) -> Shown:
    """Print a measurement's line as soon as it is taken, and pass it on."""
    print(result.line(), flush=True)
    return result


class Bare(NamedTuple):
    """Bare-loop measurement number `index` of the run: `rows` images in `wall` / `cpu` seconds
    (of one core alone, or summed over the co-scheduled loops)."""

    index: int
    rows: int
    wall: float
    cpu: float

    @property
    def label(self) -> str:
        """Index 0 is the co-scheduled loops of a pipeline run, 1.. the loop alone."""
        return f"bare PIL loop #{self.index} (draft, 1 core)" if self.index else "bare PIL loops, co-scheduled"

    @property
    def rate(self) -> float:
        return self.rows / self.wall

    @property
    def per_cpu(self) -> float:
        return self.rows / self.cpu

    def line(self) -> str:
        return (f"{self.label:<34} wall {self.wall:6.1f} s ({self.rows} rows): {self.rate:6.1f}/core; "
                f"{self.per_cpu:6.1f} per CPU-second ({1e6 / self.per_cpu:.0f} us/image)")


class Paired(NamedTuple):
    """A pipeline run and the bare loops that ran on the same cores in the same seconds (or, when
    not co-scheduled, the bare loop alone before and after it)."""

    run: Timed
    bare: Bare
    coscheduled: bool

    @property
    def ratio(self) -> float:
        """Images per CPU-second (the pipeline's start-up excluded) against the bare loop."""
        return self.run.per_cpu / self.bare.per_cpu

    def line(self) -> str:
        how = "same cores, same seconds" if self.coscheduled else "bare loop alone, mean of before and after"
        return (f"  {self.run.name} against the bare loop ({how}): per CPU-second {self.ratio:.2f}x "
                f"({self.run.per_cpu:.1f} vs {self.bare.per_cpu:.1f}; {self.run.per_cpu_whole / self.bare.per_cpu:.2f}x "
                f"with start-up) (target >= 1.2x)")


def _bare_worker(paths: List[str], stop, results) -> None:
    """A co-scheduled bare loop (one process): cycles over `paths` until `stop` is set."""
    results.put(bare_while(paths, lambda: not stop.is_set()))


def coscheduled(name: str, rows: int, cores: int, run: Callable[[bool], Tuple[float, float, int]],
                bare_paths: List[str]) -> Paired:
    """`run(True)` (the one-row start-up run) then `run(False)` while one bare-loop process per core
    cycles over `bare_paths` on the same cores, stopped when the run ends. The start-up run is
    co-scheduled too, so the CPU subtracted for it was spent under the same sharing."""
    ctx = multiprocessing.get_context("fork")
    stop, results = ctx.Event(), ctx.Queue()
    loops = [ctx.Process(target=_bare_worker, args=(bare_paths, stop, results), daemon=True) for _ in range(cores)]
    for p in loops:
        p.start()
    try:
        measured = timed(name, rows, cores, run)
    finally:
        stop.set()
    done = [results.get(timeout=120) for _ in loops]
    for p in loops:
        p.join()
    bare = Bare(0, sum(d[0] for d in done), max(d[1] for d in done), sum(d[2] for d in done))
    return Paired(measured, shown(bare), True)


def drift(alone: List[Bare]) -> str:
    """Max/min of the bare loop's rates when run alone, per CPU-second and wall."""
    per_cpu, wall = [b.per_cpu for b in alone], [b.rate for b in alone]
    return (f"bare loop alone, drift over {len(alone)} runs: {max(per_cpu) / min(per_cpu):.2f}x per CPU-second "
            f"({min(per_cpu):.1f}-{max(per_cpu):.1f}), {max(wall) / min(wall):.2f}x wall")


def pipeline_first(round_: int) -> bool:
    """Whether round `round_` of the HTTP comparison runs the pipeline before img2dataset (ABBA)."""
    return round_ % 2 == 0


def abba(rounds: int) -> List[Tuple[int, bool]]:
    """(round, pipeline?) in run order: round 0 runs the pipeline first, each next round the other
    way round, so `rounds=2` is pipeline, peer, peer, pipeline."""
    return [(k, ours == pipeline_first(k)) for k in range(rounds) for ours in (True, False)]


class PeerRounds(NamedTuple):
    """The pipeline and img2dataset over HTTP in ABBA order: `ours[k]` and `theirs[k]` ran side by side."""

    ours: List[Timed]
    theirs: List[Timed]

    def ratio(self, figure: str) -> float:
        """Ratio of the tools' mean `figure` (a `Timed` rate attribute) over their runs."""
        return float(np.mean([getattr(r, figure) for r in self.ours]) / np.mean([getattr(r, figure) for r in self.theirs]))

    def pairs(self) -> str:
        return " / ".join(f"{o.rate / t.rate:.2f}x" for o, t in zip(self.ours, self.theirs))

    def lines(self) -> List[str]:
        mean_ours, mean_theirs = (float(np.mean([r.rate for r in runs])) for runs in (self.ours, self.theirs))
        return [
            f"  pair {k + 1} ({'pipeline' if pipeline_first(k) else 'img2dataset'} first): whole-run images/s "
            f"{o.rate / t.rate:.2f}x (steady {o.steady / t.steady:.2f}x)"
            for k, (o, t) in enumerate(zip(self.ours, self.theirs))
        ] + [
            f"  pipeline / img2dataset, means of {len(self.ours)} runs each: whole-run images/s {self.ratio('rate'):.2f}x "
            f"({mean_ours:.1f} vs {mean_theirs:.1f}; steady {self.ratio('steady'):.2f}x), per CPU-second "
            f"{self.ratio('per_cpu_whole'):.2f}x (steady {self.ratio('per_cpu'):.2f}x) (target >= 2x whole-run images/s)",
        ]


def write_csv(path: str, rows: List[Tuple[str, str]]) -> str:
    with open(path, "w") as f:
        f.write("id,url\n" + "".join(f"{rid},{url}\n" for rid, url in rows))
    return path


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def headline(runs: List[Paired], alone: List[Bare], peer: Optional[PeerRounds], peer_skipped: bool) -> str:
    """The issue's two targets as measured in this run, the primary figure first on each line:
    against img2dataset the ratio of mean whole-run images/s (wall, start-up included: what a user
    waits for), against the bare loop images per CPU-second (start-up excluded, as the loop has
    none), co-scheduled on the same cores; each with its spread."""
    lines = ["HEADLINE (issue 12 targets):"]
    for r in runs:
        lines.append(f"  vs bare loop, {r.line().strip()}")
    if len(alone) > 1:
        lines.append(f"  {drift(alone)}")
    if peer is not None:
        lines.append(f"  vs img2dataset over HTTP: {peer.ratio('rate'):.2f}x whole-run images/s incl. start-up, "
                     f"means of {len(peer.ours)} runs each (pairs {peer.pairs()}; steady {peer.ratio('steady'):.2f}x) "
                     f"(target >= 2x)")
    elif peer_skipped:
        lines.append("  vs img2dataset: not measured (img2dataset could not be installed)")
    return "\n".join(lines)


SMOKE = {"images": 4, "repeat": 2, "bare_rows": 4, "modes": "in_memory", "peer": "none", "cores": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300, help="distinct generated 1024x768 JPEGs")
    ap.add_argument("--repeat", type=int, default=20, help="times each image is listed (distinct ids)")
    ap.add_argument("--modes", default="in_memory,multi_processing", help="DirectRunner modes to time on files")
    ap.add_argument("--bare_rows", type=int, default=1500,
                    help="rows (the first of the same list) the bare loop cycles over; alone, before and after the file runs")
    ap.add_argument("--peer", default="img2dataset", choices=["img2dataset", "none"],
                    help="also time the pipeline and img2dataset on the same urls over loopback HTTP")
    ap.add_argument("--peer_rounds", type=int, default=2,
                    help="pipeline/img2dataset pairs over HTTP, in ABBA order (2: pipeline, img2dataset x2, pipeline)")
    ap.add_argument("--coschedule", type=int, default=1,
                    help="1: run one bare loop per core beside each pipeline run on files (0: the pipeline alone)")
    ap.add_argument("--http_mode", default="",
                    help="DirectRunner mode of the HTTP runs (default: the one the pipeline picks itself for them)")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", default="", help="keep inputs (and img2dataset's venv) here (default: a temporary folder)")
    args = smoke.parse_args(ap, SMOKE)
    if args.bare_rows < 1 or args.peer_rounds < 1:
        ap.error("--bare_rows and --peer_rounds must be at least 1")

    work = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    files: Dict[str, bytes] = {}
    for i in range(args.images):
        path = os.path.join(work, "images", f"{i}.jpg")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(realistic_jpeg(rng))
        with open(path, "rb") as f:
            files[f"/images/{i}.jpg"] = f.read()
    server, base = loopback.serve(files)
    local = [(f"r{k:03d}-{i:04d}", f"images/{i}.jpg") for k in range(args.repeat) for i in range(args.images)]
    remote = [(rid, f"{base}/{url}") for rid, url in local]
    csv_local, csv_http = write_csv(os.path.join(work, "bench.csv"), local), write_csv(os.path.join(work, "http.csv"), remote)
    one_local, one_http = write_csv(os.path.join(work, "one.csv"), local[:1]), write_csv(os.path.join(work, "one_http.csv"), remote[:1])
    n = len(local)
    mean_kb = np.mean([len(b) for b in files.values()]) / 1024
    print(f"{n} rows over {args.images} JPEGs 1024x768 (mean {mean_kb:.0f} KB), {args.cores} cores; {load()}", flush=True)

    sample = min(args.images, 100)
    costs = stage_costs.measure([os.path.join(work, u) for _, u in local[:sample]], [u for _, u in remote[:sample]],
                                others={"bare": bare_image, "img2dataset codec": img2dataset_peer.codec_calls})
    codec = costs["decode"] + costs["resize"] + costs["encode"]
    print("per-image CPU of the pipeline's stages (one thread, microseconds):")
    print("  " + "  ".join(f"{s} {costs[s]:.0f}" for s in stage_costs.STAGES), flush=True)
    print(f"  on the same images in the same turns: the bare loop {costs['bare']:.0f}; img2dataset's codec calls "
          f"(full decode, area resize, encode) {costs['img2dataset codec']:.0f} = "
          f"{costs['img2dataset codec'] / codec:.2f}x the pipeline's codec calls ({codec:.0f})", flush=True)

    def runs_of(one_csv: str, csv: str, mode: str) -> Callable[[bool], Tuple[float, float, int]]:
        """The pipeline's one-row start-up run (True) or whole run (False), for `timed`."""
        return lambda one: run_pipeline(one_csv if one else csv, os.path.join(work, "out1" if one else "out"),
                                        mode, args.cores)

    def pipeline(name: str, one_csv: str, csv: str, mode: str) -> Timed:
        return timed(name, n, args.cores, runs_of(one_csv, csv, mode))

    bare_paths = [os.path.join(work, u) for _, u in local[:args.bare_rows]]
    modes = [m for m in args.modes.split(",") if m]
    alone: List[Bare] = []

    def bare_alone() -> None:
        alone.append(shown(Bare(len(alone) + 1, len(bare_paths), *bare_loop(bare_paths))))

    runs: List[Paired] = []
    if modes:
        bare_alone()
    if args.coschedule:
        for mode in modes:
            runs.append(coscheduled(f"pipeline {mode}, files", n, args.cores, runs_of(one_local, csv_local, mode),
                                    bare_paths))
            print(runs[-1].line(), flush=True)
    alone_runs = [] if args.coschedule else [pipeline(f"pipeline {m}, files", one_local, csv_local, m) for m in modes]
    if modes:
        bare_alone()
        print(drift(alone), flush=True)
    if alone_runs:  # against the mean of the loop alone before and after
        mean = Bare(0, len(bare_paths), (alone[0].wall + alone[-1].wall) / 2, (alone[0].cpu + alone[-1].cpu) / 2)
        runs = [Paired(r, mean, False) for r in alone_runs]
        print("\n".join(r.line() for r in runs), flush=True)

    peer: Optional[PeerRounds] = None
    # What a user gets without naming a mode (decided on the whole CSV; the one-row start-up run
    # is given the same mode, so "steady" subtracts the right start-up).
    http_mode = args.http_mode or preprocess.default_direct_mode(
        os.path.getsize(csv_http), args.cores, preprocess.Config.in_memory_below_rows)
    if args.peer == "img2dataset":
        exe, why = img2dataset_peer.install(work)
        if exe is None:
            pipeline(f"pipeline {http_mode}, HTTP", one_http, csv_http, http_mode)
            print(f"img2dataset {img2dataset_peer.VERSION}: SKIPPED, could not be installed from PyPI: {why}")
        else:
            urls, one_url = os.path.join(work, "urls.txt"), os.path.join(work, "one_url.txt")
            with open(urls, "w") as f:
                f.write("".join(u + "\n" for _, u in remote))
            with open(one_url, "w") as f:
                f.write(remote[0][1] + "\n")
            peer = PeerRounds([], [])
            for k, ours in abba(args.peer_rounds):
                if ours:
                    peer.ours.append(pipeline(f"pipeline {http_mode}, HTTP #{k + 1}", one_http, csv_http, http_mode))
                else:
                    peer.theirs.append(timed(
                        f"img2dataset {img2dataset_peer.VERSION}, HTTP #{k + 1}", n, args.cores,
                        lambda one: run_img2dataset(exe, one_url if one else urls, os.path.join(work, "i2d1" if one else "i2d"),
                                                    1 if one else n, args.cores)))
            print("\n".join(peer.lines()), flush=True)
    server.shutdown()

    if runs:
        best = max(runs, key=lambda r: r.ratio)
        # The run's CPU per image in the stage timing's units: the bare loop's cost there over its
        # cost beside (or around) the run scales away what the host did to both.
        spent = costs["bare"] / best.ratio
        stages = stage_costs.per_image_total(costs)
        print(f"per image, {best.run.name}: {spent:.0f} us of CPU in the stage timing's units (bare loop there "
              f"{costs['bare']:.0f} us / {best.ratio:.2f}x) = stages {stages:.0f} us (fetch from file) "
              f"+ runner and the rest {spent - stages:.0f} us (Beam, thread pool, CSV, planning, markers)")
    print(headline(runs, alone, peer, args.peer == "img2dataset" and peer is None))
    print(load())
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
