"""Embed a CSV of photos known to show no landmark (`indexer.build --nonlandmark_csv`), for the
non-landmark penalty of indexer/ranking/confidence.py.

The CSV has the test layout (`id,url`, GLD style). Its images go through the same preprocessing
as everything else (`python -m pipelines.preprocess --split=test`, in a subprocess: that stage is
TF-free) into `IDX/nonlandmark_records/`, which a rerun reuses when it finished for the same CSV
(sha256) and image size. Rows that fail are listed in that folder's failures.csv and left out.

Where to get a real set: Google Landmarks v2's test and index images whose ground truth has no
landmark (the `test.csv` of the GLR-2019 recognition challenge, ~115k of 117k test images are
non-landmarks; its solution marks them), or any generic photo collection of the same kind
(indoor scenes, people, food, documents, nature). A few thousand are enough: the penalty uses only
each reference's top-5 similarities.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from indexer.store.annoy_index import sha256_file
from indexer.embedding.embed import Embedder, embed_records, list_shards

RECORDS_DIR = "nonlandmark_records"
DONE_MARKER = "nonlandmark-input.json"


def preprocess(csv_path: str, index_dir: str, image_size: int) -> str:
    """Records of the CSV's images under `index_dir/nonlandmark_records/` (reused when complete)."""
    records = os.path.join(index_dir, RECORDS_DIR)
    marker = os.path.join(records, DONE_MARKER)
    wanted = {"csv": os.path.abspath(csv_path), "sha256": sha256_file(csv_path), "image_size": image_size}
    if os.path.isfile(marker):
        with open(marker) as f:
            if json.load(f) == wanted:
                return records
        shutil.rmtree(records)
    os.makedirs(index_dir, exist_ok=True)
    log_path = os.path.join(index_dir, "nonlandmark_preprocess.log")
    cmd = [sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={records}",
           "--split=test", f"--image_size={image_size}"]
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(log_path) as log:
            raise RuntimeError(f"pipelines.preprocess on {csv_path} exited with {rc}:\n{log.read()[-3000:]}")
    tmp = marker + ".tmp"
    with open(tmp, "w") as f:
        json.dump(wanted, f)
    os.replace(tmp, marker)
    return records


def embed_nonlandmarks(csv_path: str, index_dir: str, embedder: Embedder, image_size: int, batch_size: int,
                       tta: str) -> np.ndarray:
    """Unit embeddings [M, D] of the CSV's photos (preprocessed as above); an error when none decoded."""
    records = preprocess(csv_path, index_dir, image_size)
    vectors = embed_records(list_shards(records, ["test"]), embedder, batch_size, tta).vectors
    if len(vectors) == 0:
        raise ValueError(f"no image of {csv_path} could be used (see {records}/failures.csv)")
    return vectors
