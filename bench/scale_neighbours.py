"""bench_scale section `neighbours`: the other-landmark penalty and DBA (indexer/ranking/neighbours.py) at
growing N, the Annoy path against the exact one, side by side in one run.

Generated references (`generate`): `--scale_dim`-d unit vectors, 10 per landmark, landmarks in
groups of 10 that look alike (a landmark's centre is its group's centre plus noise of norm 0.6; a
photo is its landmark's centre plus noise of norm 0.5, renormalised), so every reference has
near neighbours of its own landmark and of a few similar ones, as real embeddings do.

Every (N, step, path) runs in a fresh process, so its peak memory (`ru_maxrss`, which counts the
memory-mapped input it reads: the input size is printed beside it) is its own. The neighbour
lists (N x k int32) go to a memory-mapped file on disk as the chunks stream past, and agreement is
the fraction of references whose top-k set equals the exact path's (past `--scale_exact_rows`
references, over a random sample of that many, the exact seconds projected to all N: the exact
path's cost per reference is the same for every reference). The penalty and DBA rows run
the library's own code (`confidence.mean_similarities`, `rerank.augment` over `neighbours.top_k`).
The exponent is the least-squares slope of log(seconds) on log(N) over the Annoy rows.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List

import numpy as np
from absl import flags

NAME = "neighbours"
PER_LANDMARK = 10
PER_GROUP = 10

FLAGS = flags.FLAGS
flags.DEFINE_list("scale_sizes", ["10000", "100000", "1000000"], "reference counts N")
flags.DEFINE_integer("scale_exact_max", 100_000, "run the exact path (and agreement) only up to this N")
flags.DEFINE_integer("scale_exact_rows", 10_000, "the exact path answers at most this many references (a random "
                     "sample when N is larger: agreement over the sample, exact seconds projected to all N)")
flags.DEFINE_list("scale_steps", ["penalty", "dba"], "which steps to measure")
flags.DEFINE_integer("scale_dim", 256, "dimension of the generated references")
flags.DEFINE_integer("scale_dba_k", 10, "DBA's k (itself included: k - 1 neighbours)")
flags.DEFINE_integer("scale_penalty_k", 5, "the penalty's k (other landmarks' references)")
flags.DEFINE_integer("scale_trees", 0, "trees of the temporary Annoy index (0: NeighbourSettings' default)")
flags.DEFINE_integer("scale_search_k_factor", 0, "Annoy search_k = this x trees x candidates (0: NeighbourSettings' default)")
flags.DEFINE_float("scale_big_share", 0.0, "this share of the references are one landmark's (e.g. 0.05: a landmark "
                   "far past the 2,048 references that one Annoy query can hold)")
flags.DEFINE_string("scale_work_dir", None, "where the generated data and outputs go (default: a temp folder)")

SMOKE = dict(sizes=[600, 1200], exact_max=1200, exact_rows=800, dim=16)


def generate(n: int, dim: int, directory: str, seed: int = 0, chunk: int = 100_000, big_share: float = 0.0) -> None:
    """Write `vectors.npy` (float32 [n, dim], unit rows) and `labels.npy` (int64 [n]) to `directory`,
    `chunk` rows at a time (the vectors never sit in memory whole). `big_share`: that share of the
    rows (the first ones) are photos of landmark 0, a landmark far bigger than the others."""
    rng = np.random.default_rng(seed)
    landmarks = max(2, n // PER_LANDMARK)
    groups = max(1, landmarks // PER_GROUP)
    group_centres = _unit(rng.standard_normal((groups, dim), dtype=np.float32))
    centres = _unit(group_centres[np.arange(landmarks) // PER_GROUP]
                    + rng.standard_normal((landmarks, dim), dtype=np.float32) * np.float32(0.6 / np.sqrt(dim)))
    labels = np.arange(n, dtype=np.int64) % landmarks
    labels[:int(round(n * big_share))] = 0
    vectors = np.lib.format.open_memmap(os.path.join(directory, "vectors.npy"), "w+", np.float32, (n, dim))
    for start in range(0, n, chunk):
        rows = labels[start:start + chunk]
        noise = rng.standard_normal((len(rows), dim), dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
        vectors[start:start + len(rows)] = _unit(centres[rows] + noise)
    vectors.flush()
    del vectors
    np.save(os.path.join(directory, "labels.npy"), labels)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def measure(spec: Dict) -> Dict:
    """Run one step (spec: step penalty|dba, path exact|annoy, dir, k, trees, search_k_factor, rows) in this process;
    its outputs go to dir as <step>-<path>-{items,values}.npy. Returns seconds and peak RSS. The
    exact path answers `rows` random references when that is fewer than N (`exact-rows.npy`)."""
    from indexer.ranking import confidence, neighbours, rerank

    directory, step, path = spec["dir"], spec["step"], spec["path"]
    x = np.load(os.path.join(directory, "vectors.npy"), mmap_mode="r")
    labels = np.load(os.path.join(directory, "labels.npy")) if step == "penalty" else None
    settings = neighbours.NeighbourSettings(exact_below=0 if path == "annoy" else len(x) + 1, scratch_dir=directory,
                                            **({"n_trees": spec["trees"]} if spec["trees"] else {}),
                                            **({"search_k_factor": spec["search_k_factor"]}
                                               if spec.get("search_k_factor") else {}))
    k = spec["k"] if step == "penalty" else spec["k"] - 1
    name = os.path.join(directory, f"{step}-{path}")
    if path == "exact" and spec["rows"] < len(x):
        return _measure_sample(x, labels, k, spec["rows"], name, step)
    items = np.lib.format.open_memmap(f"{name}-items.npy", "w+", np.int32, (len(x), k))
    t0 = time.perf_counter()
    chunks = _recorded(neighbours.top_k(x, k, labels, settings), items)
    if step == "penalty":
        np.save(f"{name}-values.npy", confidence.mean_similarities(chunks, len(x)))
    else:
        out = np.lib.format.open_memmap(f"{name}-values.npy", "w+", np.float32, x.shape)
        rerank.augment(x, chunks, 3.0, out=out)
        out.flush()
    seconds = time.perf_counter() - t0
    items.flush()
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure_sample(x: np.ndarray, labels, k: int, count: int, name: str, step: str) -> Dict:
    """The exact path on `count` random rows (blocks of 256), seconds projected to all rows."""
    from indexer.ranking import neighbours, rerank

    rows = np.sort(np.random.default_rng(0).choice(len(x), count, replace=False))
    np.save(os.path.join(os.path.dirname(name), "exact-rows.npy"), rows)
    items, values = np.empty((count, k), np.int32), []
    t0 = time.perf_counter()
    for b in range(0, count, 256):
        r = rows[b:b + 256]
        found, sims = neighbours.exact_rows(x, r, k, labels)
        items[b:b + 256] = found
        values.append(sims.mean(axis=1) if step == "penalty" else rerank.augment_rows(x, r, found, sims, 3.0))
    seconds = (time.perf_counter() - t0) * len(x) / count
    np.save(f"{name}-items.npy", items)
    np.save(f"{name}-values.npy", np.concatenate(values))
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rows": count}


def _recorded(chunks: Iterator, items: np.ndarray) -> Iterator:
    """The chunks, each one's neighbour items written to `items` (a file on disk) as it passes."""
    for start, found, sims in chunks:
        items[start:start + len(found)] = found
        yield start, found, sims


def agreement(directory: str, step: str, chunk: int = 100_000) -> Dict:
    """Fraction of rows whose neighbour set is the exact path's, and how far the outputs differ."""
    a = np.load(os.path.join(directory, f"{step}-annoy-items.npy"), mmap_mode="r")
    e = np.load(os.path.join(directory, f"{step}-exact-items.npy"), mmap_mode="r")
    va = np.load(os.path.join(directory, f"{step}-annoy-values.npy"), mmap_mode="r")
    ve = np.load(os.path.join(directory, f"{step}-exact-values.npy"), mmap_mode="r")
    if len(e) < len(a):  # the exact path answered a sample of rows
        rows = np.load(os.path.join(directory, "exact-rows.npy"))
        a, va = a[rows], va[rows]
    same, worst, close = 0, 0.0, 0
    for start in range(0, len(a), chunk):
        stop = start + chunk
        same += int((np.sort(a[start:stop], axis=1) == np.sort(e[start:stop], axis=1)).all(axis=1).sum())
        if step == "penalty":
            diff = np.abs(np.asarray(va[start:stop]) - np.asarray(ve[start:stop]))
            worst, close = max(worst, float(diff.max())), close + int((diff <= 1e-3).sum())
        else:
            cos = np.einsum("nd,nd->n", va[start:stop], ve[start:stop])
            worst, close = max(worst, float(1 - cos.min())), close + int((cos >= 0.9999).sum())
    return {"same_sets": same / len(a), "close": close / len(a), "worst": worst}


def _child(spec: Dict) -> Dict:
    done = subprocess.run([sys.executable, "-m", "bench.scale_neighbours", json.dumps(spec)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fitted_exponent(sizes: List[int], seconds: List[float]) -> float:
    """Least-squares slope of log(seconds) on log(N)."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def run(smoke: bool) -> None:
    sizes = SMOKE["sizes"] if smoke else [int(s) for s in FLAGS.scale_sizes]
    exact_max = SMOKE["exact_max"] if smoke else FLAGS.scale_exact_max
    exact_rows = SMOKE["exact_rows"] if smoke else FLAGS.scale_exact_rows
    dim = SMOKE["dim"] if smoke else FLAGS.scale_dim
    ks = {step: k for step, k in (("penalty", FLAGS.scale_penalty_k), ("dba", FLAGS.scale_dba_k))
          if step in FLAGS.scale_steps}
    big = f" (landmark 0: {FLAGS.scale_big_share:.0%} of them)" if FLAGS.scale_big_share else ""
    print(f"{dim}-d generated references, {PER_LANDMARK} per landmark{big}; {', '.join(f'{step} k={k}' for step, k in ks.items())}; "
          f"{os.cpu_count()} cores; one process per row (peak RSS includes the memory-mapped input)")
    print("| step | N | input MB | Annoy s | Annoy peak MB | exact s | exact peak MB | same top-k sets | "
          "outputs within tolerance | worst |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    timings: Dict[str, List[float]] = {step: [] for step in ks}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=FLAGS.scale_work_dir) as work:
        for n in sizes:
            directory = os.path.join(work, str(n))
            os.makedirs(directory)
            generate(n, dim, directory, big_share=FLAGS.scale_big_share)
            for step, k in ks.items():
                spec = {"dir": directory, "step": step, "k": k, "trees": FLAGS.scale_trees, "rows": exact_rows,
                        "search_k_factor": FLAGS.scale_search_k_factor}
                annoy = _child(dict(spec, path="annoy"))
                timings[step].append(annoy["seconds"])
                row = [step, f"{n:,}", f"{n * dim * 4 / 2**20:.0f}", f"{annoy['seconds']:.2f}", f"{annoy['peak_mb']:.0f}"]
                if n <= exact_max:
                    exact = _child(dict(spec, path="exact"))
                    agree = agreement(directory, step)
                    projected = f" (projected from {exact['rows']:,} rows)" if "rows" in exact else ""
                    row += [f"{exact['seconds']:.2f}{projected}", f"{exact['peak_mb']:.0f}", f"{agree['same_sets']:.2%}",
                            f"{agree['close']:.2%}", f"{agree['worst']:.2g}"]
                else:
                    row += ["-"] * 5
                print("| " + " | ".join(row) + " |", flush=True)
            for name in os.listdir(directory):  # 10^6 x 256 is 1 GB per file: free the disk as we go
                os.remove(os.path.join(directory, name))
    for step, seconds in timings.items():
        print(f"{step}: Annoy path seconds ~ N^{fitted_exponent(sizes, seconds):.2f} over N = "
              f"{', '.join(f'{n:,}' for n in sizes)}; N^{fitted_exponent(sizes[-2:], seconds[-2:]):.2f} "
              f"between the last two")
    print("tolerance: penalty |annoy - exact| <= 1e-3; DBA cosine(annoy, exact) >= 0.9999; worst: largest "
          "|difference| (penalty) or 1 - cosine (DBA)")


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
