"""The random-guess row: a "retrieval" whose neighbours are random train images.

It is the floor the other rows are read against, and it goes through the same evaluate CLI: for
every test id, `k` train rows drawn at random (so a landmark with many photos comes up as often
as it appears in train) with decreasing random similarities form `neighbours.csv`; the first
neighbour's landmark, with its similarity as the confidence, is the `submission.csv` answer.
Both files use the layout `indexer.predict` writes (indexer/outputs.py). Seeded.
"""

from __future__ import annotations

import csv
import io
import os
import random

from demo.stages import write_atomic


def read_rows(path: str, columns: tuple[str, ...]) -> list[dict]:
    """The rows of a CSV with a header, checking that `columns` are present."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing} (header: {reader.fieldnames})")
        return list(reader)


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


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
        submission.append([image_id, f"{picks[0][1]} {sims[0]:.6f}"])
        neighbours += [[image_id, rank, ref, lid, f"{s:.6f}"] for rank, ((ref, lid), s) in enumerate(zip(picks, sims), 1)]
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "submission.csv"), _csv(["id", "landmarks"], submission))
    write_atomic(os.path.join(out_dir, "neighbours.csv"),
                 _csv(["id", "rank", "neighbour_id", "landmark_id", "similarity"], neighbours))
    return len(ids)
