"""Soak: 10,000 urls from a loopback HTTP server, 20% bad, through `python -m pipelines.preprocess`.

Bad rows cover every injected fault (404, 403, 410, persistent 500, slow beyond the timeout,
stalled body, truncated body, HTML with status 200) plus duplicate ids and malformed CSV lines;
good rows include redirects, 500-then-200 and 429-then-200. Checks: the written ids equal the
good ids exactly, every bad id is in failures.csv exactly once with its expected reason, 4xx
were asked once, 429/5xx were retried after a backoff, and the job succeeded. Prints the counts,
the wall time and the peak memory of the pipeline's process tree. Exits 1 when a check fails,
keeping its temporary folder (CSV and outputs) and saying where; deletes it when all pass.

`--runners=multi_processing,dask` soaks the same rows on each runner in turn (the server's
request counts reset between runs) and prints them side by side: good images written per
second of wall time, per core (the cores this machine lets the run use) and per CPU-second of
the run's whole process tree (Dask workers included), start-up included.
`default` is the runner the pipeline picks itself; `multi_processing` the DirectRunner over
every core; `dask` a local Dask cluster of one worker process per core (`--runner=dask`).

    python -m bench.soak_preprocess [--rows=10000] [--bad_fraction=0.2] [--runners=default]
                                    [--smoke] [pipeline flags...]

`--smoke`: the same checks on 100 rows, one retry, in seconds per runner (`bench.smoke`).
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Tuple

import psutil

from bench import smoke
from pipelines import schema
from tests.pipeline.helpers import FaultServer

# Bad kinds with their share of the bad rows and the reason each must be reported with.
BAD = {
    "404": (0.125, "http_404"),
    "403": (0.10, "http_403"),
    "410": (0.10, "http_410"),
    "500": (0.10, "http_5xx"),
    "slow": (0.075, "timeout"),
    "stall": (0.075, "timeout"),
    "truncated": (0.10, "truncated"),
    "html": (0.125, "not_an_image"),
    "duplicate": (0.10, "duplicate_id"),
    "malformed": (0.10, "bad_row"),
}
GOOD = {"img": 0.85, "redirect": 0.05, "flaky500": 0.05, "flaky429": 0.05}


def make_rows(srv: FaultServer, n: int, bad_fraction: float, seed: int) -> Tuple[List[str], Dict, Dict]:
    """CSV lines (shuffled), {good id: url}, {bad id: reason}."""
    rng = random.Random(seed)
    n_bad = round(n * bad_fraction)
    kinds = [k for k, (share, _) in BAD.items() for _ in range(round(share * n_bad))]
    kinds += ["404"] * (n_bad - len(kinds))
    good_kinds = [k for k, share in GOOD.items() for _ in range(round(share * (n - n_bad)))]
    good_kinds += ["img"] * (n - n_bad - len(good_kinds))
    lines, good, bad = [], {}, {}
    for i, kind in enumerate(good_kinds):
        image_id = f"g{i:06d}"
        good[image_id] = srv.url(kind, image_id)
        lines.append(f"{image_id},{good[image_id]},{i % 50}")
    for i, kind in enumerate(kinds):
        image_id = f"b{i:06d}"
        if kind == "duplicate":  # a second line for a good id: that id is also written once
            dup_of = f"g{i:06d}"
            bad[f"dup:{dup_of}"] = "duplicate_id"
            lines.append(f"{dup_of},{srv.url('img', 'dup' + dup_of)},7")
        elif kind == "malformed":
            bad[image_id] = "bad_row"
            lines.append(f"{image_id},{srv.url('img', image_id)}")  # missing landmark_id
        else:
            bad[image_id] = BAD[kind][1]
            lines.append(f"{image_id},{srv.url(kind, image_id)},1")
    rng.shuffle(lines)
    # The first occurrence of a duplicated id must be its good line: move duplicates after it.
    dups = [ln for ln in lines if ln.split(",")[1].split("/")[-1].startswith("dupg")]
    dup_set = set(dups)
    lines = [ln for ln in lines if ln not in dup_set] + dups
    return lines, good, bad


CORES = len(os.sched_getaffinity(0))
RUNNER_FLAGS = {
    "default": [],
    "multi_processing": ["--direct_running_mode=multi_processing", f"--direct_num_workers={CORES}"],
    "dask": ["--runner=dask", f"--dask_workers={CORES}"],
}


def watch_tree(proc: subprocess.Popen, stop: threading.Event, peak: List[int], cpu: Dict[int, float]) -> None:
    """Peak RSS of the process tree, and the last CPU time (user+sys) seen of each process in it."""
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        total = 0
        for p in tree:
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        time.sleep(0.2)


def soak(srv: FaultServer, csv_path: str, out: str, flags: List[str], good: Dict, bad: Dict, backoff: float,
         retries: int) -> Dict:
    """One pipeline run on the rows; its checks and figures."""
    with srv.lock:
        srv.hits.clear()
        srv.times.clear()
    cmd = [sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={out}", *flags]
    print(" ".join(cmd[2:]), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, peak, cpu = threading.Event(), [0], {}
    watcher = threading.Thread(target=watch_tree, args=(proc, stop, peak, cpu), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - start
    stop.set()
    watcher.join()
    with srv.lock:
        hits, times = dict(srv.hits), {k: list(v) for k, v in srv.times.items()}

    checks: List[Tuple[str, bool]] = [("job succeeded (exit 0)", proc.returncode == 0)]
    if proc.returncode != 0:
        print(stderr[-4000:])
    written = collections.Counter()
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        if schema.parse_shard_name(name):
            with open(os.path.join(out, name), "rb") as f:
                written.update(schema.deserialize(p).image_id for p in schema.iter_frames(f.read()))
    failures_path = os.path.join(out, "failures.csv")
    failures = []
    if os.path.exists(failures_path):
        with open(failures_path, newline="") as f:
            failures = list(csv.DictReader(f))
    expected_failures = collections.Counter(
        (k.split(":", 1)[1] if k.startswith("dup:") else k, reason) for k, reason in bad.items()
    )
    got_failures = collections.Counter((r["id"], r["reason"]) for r in failures)
    checks.append(("written ids == good ids, each once",
                   set(written) == set(good) and bool(written) and max(written.values()) == 1))
    checks.append(("every bad id in failures.csv once, right reason", got_failures == expected_failures))
    four = [p for p in hits if p.split("/")[1] in ("404", "403", "410")]
    checks.append(("4xx asked once each", len(four) > 0 and all(hits[p] == 1 for p in four)))
    retried = [p for p in hits if p.split("/")[1] in ("flaky500", "flaky429")]
    checks.append(("429/5xx-then-200 asked twice each", len(retried) > 0 and all(hits[p] == 2 for p in retried)))
    failing = [p for p in hits if p.split("/")[1] == "500"]
    checks.append((f"persistent 5xx asked {retries + 1} times", all(hits[p] == retries + 1 for p in failing)))
    gaps = [b - a for p in failing for a, b in zip(times[p], times[p][1:])]
    checks.append((f"5xx retries backed off (min gap >= {backoff / 2:.2f} s)", bool(gaps) and min(gaps) >= backoff / 2))

    reasons = collections.Counter(r["reason"] for r in failures)
    print(stdout.strip().splitlines()[0] if stdout.strip() else "(no summary)")
    print(f"written {sum(written.values())} (expected {len(good)}), failed {len(failures)} (expected {len(bad)})")
    print("failures by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    if gaps:
        print(f"5xx retry gaps: min {min(gaps):.2f} s, median {sorted(gaps)[len(gaps) // 2]:.2f} s")
    cpu_s = sum(cpu.values())
    print(f"wall {wall:.1f} s, CPU {cpu_s:.1f} s, peak memory (pipeline process tree) {peak[0] / 2**20:.0f} MiB")
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    return {"ok": all(ok for _, ok in checks), "written": sum(written.values()), "wall": wall, "cpu": cpu_s,
            "peak_mib": peak[0] / 2**20}


SMOKE = {"rows": 100}
STALL_MARGIN_S = 2.0
SMOKE_PIPELINE = {"--fetch_retries": "1"}  # the pipeline flags --smoke changes (command-line ones still win)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--bad_fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stall_s", type=float, default=5.0, help="how long slow/stalled answers hang")
    ap.add_argument("--runners", default="default", help=f"comma list of {', '.join(RUNNER_FLAGS)}")
    args, pipeline_flags = smoke.parse_args(ap, SMOKE, known=True)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = [r for r in runners if r not in RUNNER_FLAGS]
    if unknown or not runners:
        ap.error(f"--runners: unknown {unknown}; choose from {', '.join(RUNNER_FLAGS)}")
    # A 2 s timeout leaves the loopback server, busy on a small shared machine, room to answer.
    flags = {"--fetch_timeout": "2", "--fetch_retries": "2", "--backoff_s": "0.2"}
    flags.update(SMOKE_PIPELINE if args.smoke else {})
    for f in pipeline_flags:
        flags[f.split("=")[0]] = f.split("=", 1)[1] if "=" in f else ""
    try:  # the soak's checks need these three; the pipeline itself checks the rest
        timeout, backoff, retries = (float(flags["--fetch_timeout"]), float(flags["--backoff_s"]),
                                     int(flags["--fetch_retries"]))
    except ValueError as e:
        ap.error(f"--fetch_timeout, --backoff_s, --fetch_retries: {e}")
    # The slow and stalled rows are there to time out, and the pipeline notices a silent server up
    # to a second after --fetch_timeout (libcurl calls its progress check about once a second).
    if args.stall_s < timeout + STALL_MARGIN_S:
        ap.error(f"--stall_s={args.stall_s:g} must be at least --fetch_timeout + {STALL_MARGIN_S:g} s "
                 f"(--fetch_timeout={timeout:g}): the slow and stalled rows must time out")

    work = tempfile.mkdtemp(prefix="soak_preprocess_")
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results = {}
    with FaultServer(stall_s=args.stall_s, image_size=(480, 360), pool=100) as srv:
        lines, good, bad = make_rows(srv, args.rows, args.bad_fraction, args.seed)
        csv_path = os.path.join(work, "soak.csv")
        with open(csv_path, "w") as f:
            f.write("id,url,landmark_id\n" + "\n".join(lines) + "\n")
        print(f"{len(lines)} rows ({len(good)} good, {len(bad)} bad) from {srv.url('', '')[:-2]}")
        for runner in runners:
            print(f"--- {runner}")
            run_flags = [f"{k}={v}" if v else k for k, v in flags.items()] + RUNNER_FLAGS[runner]
            results[runner] = soak(srv, csv_path, os.path.join(work, runner), run_flags, good, bad, backoff, retries)
    if len(runners) > 1:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\ngood images written per second, start-up included, {CORES} cores; "
              f"1/5/15-min load average at the start {load_start}, at the end {load}")
        print(f"{'runner':<18}{'wall s':>8}{'img/s':>8}{'img/s/core':>12}{'img/CPU-s':>11}{'peak MiB':>10}  checks")
        for runner, r in results.items():
            print(f"{runner:<18}{r['wall']:>8.1f}{r['written'] / r['wall']:>8.1f}{r['written'] / r['wall'] / CORES:>12.1f}"
                  f"{r['written'] / max(r['cpu'], 1e-9):>11.1f}{r['peak_mib']:>10.0f}  {'ok' if r['ok'] else 'FAIL'}")
    ok = all(r["ok"] for r in results.values())
    if ok:  # a 10,000-row soak writes hundreds of MB per runner
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"inputs and outputs kept for a look: {work}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
