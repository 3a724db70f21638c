"""The random-guess row: a "retrieval" whose neighbours are random train images.

It is the floor the other rows are read against, and it goes through the same evaluate CLI: for
every test id, `k` train rows drawn at random (so a landmark with many photos comes up as often
as it appears in train) with decreasing random similarities form `neighbours.csv`; the first
neighbour's landmark, with its similarity as the confidence, is the `submission.csv` answer.
Both files use the layout `indexer.predict` writes (indexer/outputs.py). Seeded.
"""

from __future__ import annotations

import os
import random

from indexer.outputs import read_rows, write_neighbours, write_submission


def write_random_prediction(train_csv: str, test_csv: str, out_dir: str, seed: int, k: int = 10) -> int:
    """Write OUT_DIR/{submission,neighbours}.csv for every id of `test_csv`; returns the id count."""
    train = [(r["id"], r["landmark_id"]) for r in read_rows(train_csv, ("id", "landmark_id")) if r["landmark_id"]]
    if not train:
        raise ValueError(f"{train_csv} has no labelled rows to guess from")
    ids = [r["id"] for r in read_rows(test_csv, ("id",))]
    rng = random.Random(seed)
    submission, neighbours = [], []
    for image_id in ids:
        picks = [rng.choice(train) for _ in range(k)]
        sims = sorted((rng.random() for _ in range(k)), reverse=True)
        submission.append((image_id, (int(picks[0][1]), sims[0])))
        neighbours += [(image_id, rank, ref, int(lid), s) for rank, ((ref, lid), s) in enumerate(zip(picks, sims), 1)]
    os.makedirs(out_dir, exist_ok=True)
    write_submission(os.path.join(out_dir, "submission.csv"), submission)
    write_neighbours(os.path.join(out_dir, "neighbours.csv"), neighbours)
    return len(ids)
