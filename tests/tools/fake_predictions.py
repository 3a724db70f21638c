"""A generated prediction folder (submission.csv, neighbours.csv, verification.csv, config.json)
with its solution and names, for the report's tests and its 100k-answer page benchmark
(bench/bench_report.py). No images: the page shows blanks where photos would be.

    python -m tests.tools.fake_predictions --out=DIR [--queries=100000] [--landmarks=2000] [--seed=0]

A quarter of the queries are non-landmark distractors; about 70% of the landmark queries are
answered right; every 10th query has no answer; k = 10 neighbours, the first 3 verified.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from typing import Dict

import numpy as np


def write(out: str, queries: int, landmarks: int = 50, seed: int = 0, k: int = 10) -> Dict[str, str]:
    """Write the folder; returns the paths of the solution and names CSVs (inside `out`)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    ids = [f"q{n:07d}" for n in range(queries)]
    truth = np.where(rng.random(queries) < 0.25, -1, rng.integers(0, landmarks, queries))
    right = rng.random(queries) < 0.7
    answer = np.where(right & (truth >= 0), truth, rng.integers(0, landmarks, queries))
    conf = np.round(np.where(right, 0.5 + 0.5 * rng.random(queries), 0.6 * rng.random(queries)), 6)
    answered = np.arange(queries) % 10 != 9
    with open(os.path.join(out, "submission.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "landmarks"])
        w.writerows([i, f"{a} {c:.6f}" if ok else ""] for i, a, c, ok in zip(ids, answer, conf, answered))
    with open(os.path.join(out, "neighbours.csv"), "w", newline="") as f, \
            open(os.path.join(out, "verification.csv"), "w", newline="") as v:
        w, wv = csv.writer(f), csv.writer(v)
        w.writerow(["id", "rank", "neighbour_id", "landmark_id", "similarity"])
        wv.writerow(["id", "rank", "inliers"])
        for n, image_id in enumerate(ids):
            sims = np.sort(rng.random(k))[::-1]
            lms = np.where(rng.random(k) < 0.6, answer[n], rng.integers(0, landmarks, k))
            for r in range(k):
                ref = int(lms[r]) * 1000 + int(rng.integers(0, 50))
                w.writerow([image_id, r + 1, f"r{ref:09d}", int(lms[r]), f"{sims[r]:.6f}"])
                if r < 3:
                    wv.writerow([image_id, r + 1, int(rng.integers(0, 60))])
    solution = os.path.join(out, "solution.csv")
    with open(solution, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "landmark_id"])
        w.writerows([i, "" if t < 0 else int(t)] for i, t in zip(ids, truth))
    names = os.path.join(out, "names.csv")
    with open(names, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["landmark_id", "name"])
        w.writerows([n, f"Landmark number {n}"] for n in range(landmarks))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"index_dir": None, "solution": solution, "landmark_names": names, "k": k}, f)
    return {"solution": solution, "names": names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--landmarks", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out, args.queries, args.landmarks, args.seed))


if __name__ == "__main__":
    main()
