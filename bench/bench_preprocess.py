"""Benchmark: the preprocessing pipeline's images/s per core against a bare Python loop.

Both process the same rows in one run: `--images` distinct realistic 1024x768 JPEGs generated
locally (smooth colour fields plus sensor-like noise, ~150-250 KB each), listed `--repeat`
times under distinct ids so the per-image work dominates. The bare loop does what the pipeline
does per image with Pillow alone: read the file, reduced-size (draft) decode, resize the shorter
side to 256 (bilinear), encode JPEG q90. The pipeline runs as a user runs it (a subprocess of
`python -m pipelines.preprocess`), in each DirectRunner mode asked for; its fixed start-up
(interpreter, Beam import, graph) is measured with a one-row run and reported apart, so the
steady rate is rows / (wall - start-up), likewise for CPU time. Per core = steady rate / cores
the run may use.
Target: pipeline per core >= 0.8x the bare loop (which is one core). Images per CPU-second
(user+sys time of the run's whole process tree) are printed too: on a machine shared with other jobs the
wall-clock rates of the two measurements see different contention, the CPU-time rates much less.

    python -m bench.bench_preprocess [--images=300] [--repeat=20] [--modes=in_memory,multi_processing]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import psutil
from PIL import Image


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


def bare_loop(paths: List[str], image_size: int = 256) -> Tuple[float, float]:
    """(wall, CPU) seconds for read + draft decode + resize + encode of every path, on one core."""
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
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
    return time.perf_counter() - start, time.process_time() - cpu


def run_pipeline(csv_path: str, out_dir: str, mode: str, cores: int) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of the run and every worker process it started).

    CPU is sampled per process of the tree every 50 ms (Beam's multi-processing workers are not
    waited for by their parent, so `RUSAGE_CHILDREN` would miss them); a process's last <50 ms
    may be missed.
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={out_dir}",
        f"--direct_running_mode={mode}", f"--direct_num_workers={cores}",
    ]
    log = tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
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
        raise SystemExit(f"pipeline failed:\n{log.read()[-3000:]}")
    return wall, sum(cpu.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300, help="distinct generated 1024x768 JPEGs")
    ap.add_argument("--repeat", type=int, default=20, help="times each image is listed (distinct ids)")
    ap.add_argument("--modes", default="in_memory,multi_processing", help="DirectRunner modes to time")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", default="", help="keep inputs here (default: a temporary folder)")
    args = ap.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(os.path.join(work, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(args.images):
        path = os.path.join(work, "images", f"{i}.jpg")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(realistic_jpeg(rng))
        files.append(path)
    rows = [(f"r{k:03d}-{i:04d}", f"images/{i}.jpg") for k in range(args.repeat) for i in range(args.images)]
    csv_path = os.path.join(work, "bench.csv")
    with open(csv_path, "w") as f:
        f.write("id,url\n" + "".join(f"{rid},{url}\n" for rid, url in rows))
    one_path = os.path.join(work, "one.csv")
    with open(one_path, "w") as f:
        f.write(f"id,url\n{rows[0][0]},{rows[0][1]}\n")
    mean_kb = np.mean([os.path.getsize(p) for p in files]) / 1024
    print(f"{len(rows)} rows over {args.images} JPEGs 1024x768 (mean {mean_kb:.0f} KB), {args.cores} cores")

    bare_s, bare_cpu = bare_loop([os.path.join(work, u) for _, u in rows])
    bare, bare_per_cpu = len(rows) / bare_s, len(rows) / bare_cpu
    print(f"bare PIL loop (draft decode, 1 core): {bare:7.1f} images/s/core, {bare_per_cpu:6.1f} per CPU-second")
    for mode in [m for m in args.modes.split(",") if m]:
        startup, startup_cpu = run_pipeline(one_path, os.path.join(work, "out1"), mode, args.cores)
        wall, cpu_total = run_pipeline(csv_path, os.path.join(work, "out"), mode, args.cores)
        steady = len(rows) / max(wall - startup, 1e-9)
        per_core = steady / args.cores
        cpu = max(cpu_total - startup_cpu, 1e-9)
        print(
            f"pipeline {mode:<16} wall {wall:5.1f} s (start-up {startup:.1f} s): {len(rows) / wall:7.1f} images/s, "
            f"steady {steady:7.1f} images/s = {per_core:6.1f} /core, {len(rows) / cpu:6.1f} per CPU-second"
        )
        print(
            f"  ratio to the bare loop: per core (wall) {per_core / bare:.2f}x, "
            f"per CPU-second {len(rows) / cpu / bare_per_cpu:.2f}x (target >= 0.8x)"
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
