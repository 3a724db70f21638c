"""Prediction as a Beam job on any runner: one element per shard of queries, resumable per shard.

    Create(test shard paths) -> Reshuffle -> ParDo(_PredictShardFn)

Per shard, a worker process embeds the queries with the index's model and test-time augmentation
(`embed.embed_records`, as in-process prediction), searches the index, re-ranks and penalises as
the settings say, spatially verifies with the index's local features when it has them and
`verify_k` > 0, and votes: the same calls as `indexer.predict`'s in-process path
(`indexer.api.Recognizer.answer` / `.verify`, indexer/ranking/scoring.py). It writes that shard's
answers to SHARDS/<shard file name>.npz (`ids`, neighbour `items` and `sims`, the vote as
`landmark` / `confidence` / `voted`, `inliers` when verified, the query `vectors` with
`--batch_neighbours`, and `meta`) under a temporary name,
then renames it. A rerun skips a shard whose file names this shard's bytes and this job (model,
index manifest, scoring settings); everything else is redone. The driver then reads the files
back in shard order (`gather`): the rows `indexer.predict` would have computed in one process
(with `--batch_neighbours` it then votes again over the whole batch, as in one process).

Workers open the index from its folder, by path, once per process (a process-wide cache: the
DaskRunner sets a DoFn up once per partition), and check that the manifest they see is the
driver's. So the index folder must be readable at the same path on every worker (a local path
on one machine, a shared file system for a cluster); SHARDS goes through `tf.io.gfile` and may be
`gs://`. TensorFlow runs inside the workers: nothing here imports the `tfrecord` package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import threading
import time
import zipfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from absl import logging
from apache_beam.options.pipeline_options import StandardOptions

from indexer.embedding import embedding_shards
from indexer.embedding.embed import iter_jpegs, model_fingerprint
from pipelines.graph import dask_setup

SUFFIX = embedding_shards.SUFFIX
TMP_MARK = embedding_shards.TMP_MARK

_LOCK = threading.Lock()
_RECOGNIZERS: Dict[Tuple[str, str], object] = {}  # (index_dir, job key) -> Recognizer, one per process


@dataclasses.dataclass(frozen=True)
class QuerySettings:
    """What a worker needs to answer like the driver: `indexer.api.Recognizer.open` arguments."""

    index_dir: str
    image_size: int
    batch_size: int
    options: Tuple[Tuple[str, object], ...]  # k, search_k, vote_method, rerank, ... (Recognizer.open)


def manifest_sha256(index_dir: str) -> str:
    import tensorflow as tf

    from indexer.store.index_dir import MANIFEST

    with tf.io.gfile.GFile(os.path.join(index_dir, MANIFEST), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def job_key(settings: QuerySettings) -> str:
    """Names what a shard's answers depend on besides the shard: the model, the index, the settings."""
    from indexer.store.index_dir import MODEL_DIR

    doc = {"model": model_fingerprint(os.path.join(settings.index_dir, MODEL_DIR)),
           "manifest": manifest_sha256(settings.index_dir), "image_size": settings.image_size,
           "options": [list(kv) for kv in settings.options]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def shared_recognizer(settings: QuerySettings, key: str):
    """This process's Recognizer for the index, opened (and verified) on first use; refuses an
    index folder that is not the one the driver saw (another manifest at that path)."""
    from indexer.api import Recognizer

    cache_key = (settings.index_dir, key)
    with _LOCK:
        if cache_key not in _RECOGNIZERS:
            seen = job_key(settings)
            if seen != key:
                raise ValueError(f"{settings.index_dir} on this worker is not the driver's index and model "
                                 f"(job key {seen[:12]} vs {key[:12]})")
            _RECOGNIZERS[cache_key] = Recognizer.open(settings.index_dir, image_size=settings.image_size,
                                                      **dict(settings.options))
        return _RECOGNIZERS[cache_key]


def output_path(out_dir: str, shard: str) -> str:
    return os.path.join(out_dir, os.path.basename(shard) + SUFFIX)


def answer_shard(recognizer, shard: str, batch_size: int):
    """(query ids, `indexer.api.Answers`) of one shard: what in-process prediction computes for its rows."""
    embedded = recognizer.embed_records([shard], batch_size)  # batched as the in-process path batches it
    answers = recognizer.answer(embedded.vectors)
    if recognizer.verifies:
        by_id = {image_id: q for q, image_id in enumerate(embedded.image_ids)}
        answers = recognizer.verify(answers, ((by_id[i], jpeg) for i, jpeg in iter_jpegs([shard]) if i in by_id))
    return embedded.image_ids, answers


def write(path: str, image_ids: Sequence[str], answers, meta: Dict, with_vectors: bool = False) -> None:
    """One shard's answers with `meta` (plus who wrote it), and the query vectors when `with_vectors`:
    temporary name, then rename over `path`."""
    import tensorflow as tf

    meta = dict(meta, written_by=embedding_shards.provenance())
    voted = np.array([v is not None for v in answers.votes], bool)
    arrays = dict(ids=np.array(list(image_ids), dtype=str), items=answers.items, sims=answers.similarities,
                  landmark=np.array([v[0] if v is not None else 0 for v in answers.votes], np.int64),
                  confidence=np.array([v[1] if v is not None else 0.0 for v in answers.votes], np.float64),
                  voted=voted, meta=np.array(json.dumps(meta, sort_keys=True)))
    if answers.inliers is not None:
        arrays["inliers"] = answers.inliers
    if with_vectors:  # --batch_neighbours: the driver votes again over the whole batch
        arrays["vectors"] = np.asarray(answers.vectors, np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = f"{path}{TMP_MARK}{os.urandom(4).hex()}"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(buf.getvalue())
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read(path: str):
    """(meta, ids, `indexer.api.Answers`) of one file."""
    import tensorflow as tf

    from indexer.api import Answers

    with tf.io.gfile.GFile(path, "rb") as f:
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ids = [str(x) for x in z["ids"]]
            votes = [(int(l), float(c)) if v else None for l, c, v in zip(z["landmark"], z["confidence"], z["voted"])]
            answers = Answers(z["items"], z["sims"], votes, z["inliers"] if "inliers" in z.files else None,
                              z["vectors"] if "vectors" in z.files else None)
    if not (len(ids) == len(votes) == len(answers.items) == len(answers.similarities)):
        raise ValueError(f"{path}: ids, neighbours and votes disagree in length")
    return meta, ids, answers


def read_meta(path: str) -> Optional[Dict]:
    """The meta of an existing, readable file without "written_by"; None when missing or unreadable."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    try:
        meta = read(path)[0]
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):  # foreign or damaged: redo it
        return None
    meta.pop("written_by", None)
    return meta


class _PredictShardFn(beam.DoFn):
    """Shard path -> SHARDS/<shard>.npz, skipped when already done; yields (shard, 'predicted'|'resumed').
    The index and model are opened on the first shard that needs them: a fully resumed job opens none."""

    def __init__(self, settings: QuerySettings, key: str, out_dir: str) -> None:
        self._settings = settings
        self._key = key
        self._out_dir = out_dir

    def process(self, shard: str) -> Iterator[Tuple[str, str]]:
        path = output_path(self._out_dir, shard)
        meta = embedding_shards.shard_meta(shard, self._key)
        if read_meta(path) == meta:
            yield shard, "resumed"
            return
        t0 = time.perf_counter()
        image_ids, answers = answer_shard(shared_recognizer(self._settings, self._key), shard,
                                          self._settings.batch_size)
        write(path, image_ids, answers, meta, with_vectors=dict(self._settings.options).get("batch_neighbours", False))
        logging.info("predicted %s: %d queries in %.1f s", shard, len(image_ids), time.perf_counter() - t0)
        yield shard, "predicted"


class PredictShards(beam.PTransform):
    """PCollection of test shard paths -> one (shard, status) per shard, its answers in SHARDS."""

    def __init__(self, settings: QuerySettings, key: str, out_dir: str) -> None:
        super().__init__()
        self._fn = _PredictShardFn(settings, key, out_dir)

    def expand(self, shards):
        return (
            shards
            | "SpreadShards" >> beam.Reshuffle()  # breaks fusion on Dataflow; on Dask, Create's partitions rule
            | "PredictShard" >> beam.ParDo(self._fn)
        )


def gather(out_dir: str, shards: Sequence[str], key: str):
    """(ids, `indexer.api.Answers`) of `shards` concatenated in that order; a missing file or one
    made for another shard size or job raises (the job did not finish it)."""
    import tensorflow as tf

    from indexer.api import Answers

    ids: List[str] = []
    parts = []
    for shard in shards:
        path = output_path(out_dir, shard)
        if not tf.io.gfile.exists(path):
            raise RuntimeError(f"{path} is missing: the prediction job did not finish shard {shard}")
        meta, part_ids, answers = read(path)
        wrong = embedding_shards.mismatches(meta, shard, key)
        if wrong:
            raise RuntimeError(f"{path} does not belong to {shard} and this job ({', '.join(wrong)} differ): "
                               f"delete it and rerun")
        ids.extend(part_ids)
        parts.append(answers)
    if not parts:
        raise RuntimeError("no test shards to gather")
    inliers = [p.inliers for p in parts]
    vectors = [p.vectors for p in parts]
    return ids, Answers(np.concatenate([p.items for p in parts]), np.concatenate([p.similarities for p in parts]),
                        [v for p in parts for v in p.votes],
                        None if any(i is None for i in inliers) else np.concatenate(inliers),
                        None if any(v is None for v in vectors) else np.concatenate(vectors))


def predict_with_beam(files: Sequence[str], settings: QuerySettings, out_dir: str, beam_args: Sequence[str],
                      dask_address: str = "", dask_workers: int = 0):
    """Run the job over `files` (resuming whatever `out_dir` already holds for this job) and return
    (query ids, `indexer.api.Answers`) in file order."""
    import tensorflow as tf

    from indexer.embedding.beam_embed import pipeline_options

    key = job_key(settings)
    tf.io.gfile.makedirs(out_dir)
    stale = tf.io.gfile.glob(os.path.join(out_dir, f"*{SUFFIX}{TMP_MARK}*"))
    for path in stale:  # left by killed workers
        tf.io.gfile.remove(path)
    options = pipeline_options(beam_args, dask_address, dask_workers)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    t0 = time.perf_counter()
    with dask_setup.cluster_if_needed(options, dask_workers):
        p = beam.Pipeline(options=options)
        _ = p | "QueryShards" >> beam.Create(list(files)) | "PredictShards" >> PredictShards(settings, key, out_dir)
        dask_setup.run_to_end(p, options)
    ids, answers = gather(out_dir, files, key)
    logging.info("Beam prediction job (%s): %d shards, %d queries in %s, %.1f s", runner, len(files), len(ids),
                 out_dir, time.perf_counter() - t0)
    return ids, answers
