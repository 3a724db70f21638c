"""Embeddings stored per input shard: the unit of work and of resume of the Beam embedding job.

    EMB/<shard file name>.npz   ids (unicode [n]), landmark_ids (int64 [n]), vectors (float32 [n, D])
                                and meta (JSON: shard name, shard size and sha256, model fingerprint,
                                and the test-time augmentation when it is not `none`)

One file per TFRecord shard, written under a temporary name and renamed, so a file under its final
name is always complete. A file counts as done for a shard only when its meta names this shard's
bytes (sha256), this model (fingerprint) and this `--tta` mode (a file without "tta" is `none`, as
every file was before multiscale): a rerun skips those and redoes the rest, and a changed shard,
model or mode is embedded again. Paths go through `tf.io.gfile`, so EMB may be `gs://` for
workers on other machines.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import uuid
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from indexer.embedding.embed import Embedded

SUFFIX = ".npz"
TMP_MARK = ".tmp-"  # EMB/<name>.npz.tmp-<random>: a write in progress, or left by a killed worker


def output_path(embed_dir: str, shard: str) -> str:
    """Where the embeddings of `shard` go."""
    return os.path.join(embed_dir, os.path.basename(shard) + SUFFIX)


def shard_sha256(path: str) -> str:
    """sha256 of a shard's bytes, read in chunks (local or gs://)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shard_meta(shard: str, model_fingerprint: str, tta: str = "none") -> Dict:
    """What a finished file for `shard` must say about its input (reads the whole shard once)."""
    import tensorflow as tf

    meta = {"shard": os.path.basename(shard), "shard_size": tf.io.gfile.stat(shard).length,
            "shard_sha256": shard_sha256(shard), "model_fingerprint": model_fingerprint}
    if tta != "none":
        meta["tta"] = tta
    return meta


def provenance() -> Dict:
    """Which worker process wrote a file (for the logs and tests; not part of the done check)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def write(path: str, embedded: Embedded, meta: Dict) -> None:
    """Write one shard's embeddings with `meta` and this process's `provenance()` under "written_by":
    temporary name, then rename over `path`."""
    import tensorflow as tf

    meta = dict(meta, written_by=provenance())
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(embedded.image_ids, dtype=str), landmark_ids=embedded.landmark_ids.astype(np.int64),
             vectors=embedded.vectors.astype(np.float32, copy=False), meta=np.array(json.dumps(meta, sort_keys=True)))
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(buf.getvalue())
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read(path: str) -> Tuple[Dict, Embedded]:
    """(meta, embeddings) of one file."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ids = [str(x) for x in z["ids"]]
            embedded = Embedded(ids, z["landmark_ids"].astype(np.int64), z["vectors"].astype(np.float32, copy=False))
    if not (len(ids) == len(embedded.landmark_ids) == len(embedded.vectors)) or embedded.vectors.ndim != 2:
        raise ValueError(f"{path}: ids, landmark ids and vectors disagree in length")
    return meta, embedded


def read_meta(path: str) -> Optional[Dict]:
    """The meta of an existing, readable file, without "written_by"; None when there is none (or
    it is unreadable)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    try:
        meta = read(path)[0]
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):  # foreign or damaged: redo the shard
        return None
    meta.pop("written_by", None)
    return meta


def remove_stale_temporaries(embed_dir: str) -> int:
    """Delete temporary files left by killed workers (call before a job starts); returns how many."""
    import tensorflow as tf

    stale = tf.io.gfile.glob(os.path.join(embed_dir, f"*{SUFFIX}{TMP_MARK}*"))
    for path in stale:
        tf.io.gfile.remove(path)
    return len(stale)


def mismatches(meta: Dict, shard: str, model_fingerprint: str, tta: str = "none") -> List[str]:
    """Which of the shard name, the shard's current size, the model fingerprint and the `--tta` mode
    a file's meta gets wrong (sorted; empty: the file is this model's embeddings of this shard with
    this augmentation, sha256 aside)."""
    import tensorflow as tf

    expected = {"shard": os.path.basename(shard), "shard_size": tf.io.gfile.stat(shard).length,
                "model_fingerprint": model_fingerprint, "tta": tta}
    return sorted(k for k, v in expected.items() if meta.get(k, "none" if k == "tta" else None) != v)


def gather(embed_dir: str, shards: Sequence[str], model_fingerprint: str, dimension: int,
           tta: str = "none") -> Embedded:
    """Concatenate the files of `shards`, in that order, checking each was made by this model with
    this `tta` from a shard of the current size; a missing or stale file raises (the job did not
    finish it)."""
    import tensorflow as tf

    ids, landmarks, vectors = [], [], []
    for shard in shards:
        path = output_path(embed_dir, shard)
        if not tf.io.gfile.exists(path):
            raise RuntimeError(f"{path} is missing: the embedding job did not finish shard {shard}")
        meta, part = read(path)
        wrong = mismatches(meta, shard, model_fingerprint, tta)
        if wrong or part.vectors.shape[1] != dimension:
            raise RuntimeError(f"{path} does not belong to {shard} and this model ({', '.join(wrong) or 'dimension'}"
                               f" differ): delete it and rerun")
        ids.extend(part.image_ids)
        landmarks.append(part.landmark_ids)
        vectors.append(part.vectors)
    if not ids:
        return Embedded([], np.zeros(0, np.int64), np.zeros((0, dimension), np.float32))
    return Embedded(ids, np.concatenate(landmarks), np.concatenate(vectors))
