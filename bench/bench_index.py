"""Annoy against exact search on generated clustered embeddings, side by side in one run.

`python -m bench.bench_index [--n=1000000] [--dim=256] [--n_trees=50,100] [--search_k=...]`

The reference set mimics landmark embeddings: `n / cluster_size` landmarks, each a random unit
centre, its images the centre plus isotropic Gaussian noise of norm about `--noise`,
re-normalised (an image's cosine to its centre is about 1/sqrt(1 + noise^2): 0.89 at 0.5, 0.8
at 0.75). Queries are fresh images of random landmarks.

For each `--n_trees` it prints the build time and file size (the indexer's own `build_sharded`,
all cores), then queries/second for k=10 at each `--search_k` (the indexer's own
`ShardedIndex.query`, one thread per core) and recall@10 against exact search (batches of 64
queries: NumPy/BLAS matrix product + argpartition, one batch per thread, one thread per core).
The machine is shared, so exact search is timed again on `--exact_sample` queries right before
every Annoy row and the speed-up uses that adjacent figure.

`--smoke`: the same on 2,000 x 32 vectors, two small forests, in about a second (`bench.smoke`).
"""

from __future__ import annotations

import os

# Exact search parallelises over queries itself (one single-threaded BLAS call per core, like
# Annoy's one query thread per core): a multi-threaded BLAS call stalls at its barriers whenever
# the shared machine deschedules one of its threads, which would flatter Annoy. Set before NumPy.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import concurrent.futures  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags

from bench import smoke
from indexer.store.annoy_index import sha256_file
from indexer.store.sharded import ShardedIndex, build_sharded

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 1_000_000, "reference vectors (use e.g. 100000 for a quick try)")
flags.DEFINE_integer("dim", 256, "dimension")
flags.DEFINE_integer("cluster_size", 50, "mean images per landmark (cluster)")
flags.DEFINE_float("noise", 0.5, "norm of the per-image noise added to a unit centre")
flags.DEFINE_integer("exact_sample", 200, "queries exact search is re-timed on before each Annoy row")
flags.DEFINE_integer("queries", 1000, "queries (exact search and every Annoy setting run the same ones)")
flags.DEFINE_list("n_trees", ["50", "100"], "Annoy tree counts to build")
flags.DEFINE_list("search_k", ["-1", "1000", "2000", "5000", "10000"], "Annoy search_k values (-1: n_trees * k)")
flags.DEFINE_integer("k", 10, "neighbours per query")
flags.DEFINE_integer("seed", 0, "generator seed")
flags.DEFINE_string("work_dir", None, "where index files go (default: a temp folder, deleted after)")
smoke.define_absl_flag()
SMOKE = {"n": 2000, "dim": 32, "queries": 100, "exact_sample": 50, "n_trees": ["5", "10"], "search_k": ["-1", "200"]}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`n` unit vectors, each a random centre plus isotropic noise of norm about `noise`."""
    dim = centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        labels = rng.integers(0, len(centres), stop - start)
        noise_block = rng.standard_normal((stop - start, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        out[start:stop] = unit_rows(centres[labels] + noise_block)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, batch: int = 64) -> np.ndarray:
    """Exact top-k by cosine: batches of `queries @ base.T` (BLAS) + argpartition, one batch per
    thread, one thread per core (NumPy releases the GIL in both)."""
    n = len(base)

    def top(q: np.ndarray) -> np.ndarray:
        scores = q @ base.T
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        return np.take_along_axis(part, order, axis=1)

    batches = [queries[start : start + batch] for start in range(0, len(queries), batch)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(top, batches)))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` present in the same row of `found`."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def main(argv) -> None:
    del argv
    smoke.apply_absl(SMOKE)
    rng = np.random.default_rng(FLAGS.seed)
    t0 = time.perf_counter()
    centres = unit_rows(rng.standard_normal((max(1, FLAGS.n // FLAGS.cluster_size), FLAGS.dim), dtype=np.float32))
    base = clustered(FLAGS.n, centres, FLAGS.noise, rng)
    queries = clustered(FLAGS.queries, centres, FLAGS.noise, rng)
    print(f"generated {FLAGS.n:,} x {FLAGS.dim} reference + {FLAGS.queries:,} query vectors "
          f"({len(centres):,} clusters, noise {FLAGS.noise}) "
          f"in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores", flush=True)

    def time_exact(q: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        found = exact_topk(base, q, FLAGS.k)
        return found, len(q) / (time.perf_counter() - t0)

    truth, exact_qps = time_exact(queries)
    print(f"exact search: {exact_qps:,.0f} QPS (k={FLAGS.k}, {FLAGS.queries} queries)", flush=True)

    rows = [("exact (BLAS)", "-", "-", "-", "-", f"{exact_qps:,.0f}", "1.000", "1.0x")]
    with tempfile.TemporaryDirectory(dir=FLAGS.work_dir) as work:
        for n_trees in (int(t) for t in FLAGS.n_trees):
            t0 = time.perf_counter()
            [record] = build_sharded(base, work, n_trees, num_shards=1, seed=FLAGS.seed)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sha256_file(os.path.join(work, record.name))
            verify_s = time.perf_counter() - t0
            size_mb = record.size / 1e6
            print(f"annoy n_trees={n_trees}: build {build_s:.1f} s, {size_mb:,.0f} MB, sha256 check {verify_s:.1f} s",
                  flush=True)
            index = ShardedIndex(work, [record], FLAGS.dim, n_trees, verify_checksum=False)
            for search_k in (int(s) for s in FLAGS.search_k):
                _, exact_now = time_exact(queries[: FLAGS.exact_sample])
                t0 = time.perf_counter()
                found, _ = index.query(queries, FLAGS.k, search_k=search_k)
                qps = FLAGS.queries / (time.perf_counter() - t0)
                r = recall(found, truth)
                rows.append(("annoy", str(n_trees), f"{build_s:.1f}", f"{size_mb:,.0f}", str(search_k),
                             f"{qps:,.0f}", f"{r:.3f}", f"{qps / exact_now:.1f}x (exact {exact_now:,.0f})"))
                print(f"  search_k={search_k}: {qps:,.0f} QPS, recall@{FLAGS.k} {r:.3f}, "
                      f"{qps / exact_now:.1f}x exact ({exact_now:,.0f} QPS just before)", flush=True)
            del index
            os.remove(os.path.join(work, record.name))

    header = ("method", "n_trees", "build s", "size MB", "search_k", "QPS", f"recall@{FLAGS.k}", "vs exact")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    app.run(main)
