"""Embed TFRecord shards as a Beam job on any runner: one element per shard, resumable per shard.

`EmbedShards` (one labelled composite): Reshuffle (spread the shard paths over the workers) ->
ParDo(_EmbedShardFn). A worker process loads the exported model once, on the first shard that
needs it, and keeps it for every shard it gets (a process-wide cache rather than `DoFn.setup`:
the DaskRunner deserialises and sets up the DoFn once per partition), after checking that the
model it sees at that path has the driver's fingerprint. Per shard it either skips it (its
file in EMB already names this shard's bytes, this model and this test-time augmentation) or
embeds it with the single-process code (`embed.embed_records`, with the same `--tta`) and writes
EMB/<shard>.npz atomically (embedding_shards.py). With `local_features=F`, the same pass over the
shard's records also extracts each image's SIFT features from the bytes it embeds and writes them
first, to EMB/<shard>.features.npy (local_features.write_part, atomic); the .npz's meta then names F
and records that file's item count and sha256, so a shard counts as done only with both files, and
`feature_parts` hands the files to the index build, which merges them into its store. Meanwhile the
driver counts those files as they appear onto its
progress bar (embed_progress.py). It then reads the files back in
shard order, so the result is the single-process result, row for row.

TensorFlow runs inside the workers and shards are read with tf.data: nothing here may import the
`tfrecord` package (pipelines/schema.py's serialize/deserialize), which cannot share the process.
"""

from __future__ import annotations

import logging as std_logging
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from absl import logging
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from indexer.embedding import embed_progress, embedding_shards
from indexer.ranking import local_features
from indexer.embedding.embed import Embedded, Embedder, check_export, embed_records, model_fingerprint
from pipelines.cli import console
from pipelines.graph import dask_setup
from pipelines.cli.cli_errors import InputError, SettingsError

_LOCK = threading.Lock()
_MODELS: Dict[Tuple[str, str], Embedder] = {}  # (export_dir, fingerprint) -> model, one per process


def shared_embedder(export_dir: str, fingerprint: str) -> Embedder:
    """This process's copy of the model, loaded on first use; refuses a model at `export_dir`
    that is not the one the driver fingerprinted (a stale copy on a worker machine)."""
    key = (export_dir, fingerprint)
    with _LOCK:
        if key not in _MODELS:
            seen = model_fingerprint(export_dir)
            if seen != fingerprint:
                raise ValueError(f"{export_dir} on this worker is not the driver's model "
                                 f"(fingerprint {seen[:12]} vs {fingerprint[:12]})")
            _MODELS[key] = Embedder(export_dir)
        return _MODELS[key]


_EXTRACTORS = threading.local()  # OpenCV's SIFT is not thread-safe: one per thread


def shared_extractor(max_features: int) -> local_features.Extractor:
    extractors = getattr(_EXTRACTORS, "by_size", None)
    if extractors is None:
        extractors = _EXTRACTORS.by_size = {}
    if max_features not in extractors:
        extractors[max_features] = local_features.Extractor(max_features)
    return extractors[max_features]


def expected_meta(shard: str, fingerprint: str, max_features: int, tta: str = "none") -> Dict:
    """What a finished .npz's meta says (FEATURES aside): the shard, the model, the test-time
    augmentation and, when local features are extracted, how many per image at most."""
    meta = embedding_shards.shard_meta(shard, fingerprint, tta)
    if max_features:
        meta[LOCAL_FEATURES] = max_features
    return meta


LOCAL_FEATURES = "local_features"  # meta: max features per image (absent: none extracted)
FEATURES = "features"  # meta: the part file's {"n_items", "sha256"}


def _done(path: str, shard: str, meta: Dict, embed_dir: str, max_features: int) -> bool:
    """Whether EMB holds this shard's finished output: its .npz for this shard and model and, with
    local features, a part file of the size its meta records (its bytes are checked at merge)."""
    found = embedding_shards.read_meta(path)
    if found is None:
        return False
    features = found.pop(FEATURES, None)
    if found != meta:
        return False
    if not max_features:
        return True
    import tensorflow as tf

    part = local_features.part_path(embed_dir, shard)
    try:
        return isinstance(features, dict) and tf.io.gfile.stat(part).length == local_features.part_size(
            int(features["n_items"]), max_features)
    except (tf.errors.OpError, KeyError, TypeError, ValueError):
        return False


class _EmbedShardFn(beam.DoFn):
    """Shard path -> EMB/<shard>.npz embedded with test-time augmentation `tta` (and
    EMB/<shard>.features.npy with local features), skipped when already done; yields
    (shard, 'embedded'|'resumed'). The model is loaded on the first shard that needs it, so a fully
    resumed job loads none."""

    def __init__(self, export_dir: str, fingerprint: str, embed_dir: str, batch_size: int,
                 max_features: int = 0, tta: str = "none") -> None:
        self._export_dir = export_dir
        self._fingerprint = fingerprint
        self._embed_dir = embed_dir
        self._batch_size = batch_size
        self._max_features = max_features
        self._tta = tta

    def process(self, shard: str) -> Iterator[Tuple[str, str]]:
        path = embedding_shards.output_path(self._embed_dir, shard)
        meta = expected_meta(shard, self._fingerprint, self._max_features, self._tta)
        if _done(path, shard, meta, self._embed_dir, self._max_features):
            yield shard, "resumed"
            return
        t0 = time.perf_counter()
        records: List = []
        on_images = None
        if self._max_features:
            extract = shared_extractor(self._max_features)
            on_images = lambda images: records.append(  # noqa: E731 - the same bytes, in the same pass
                local_features.extract_records(images, self._max_features, extract))
        embedded = embed_records([shard], shared_embedder(self._export_dir, self._fingerprint), self._batch_size,
                                 self._tta, on_images=on_images)
        if self._max_features:
            part = local_features.write_part(
                local_features.part_path(self._embed_dir, shard),
                local_features.concatenate(records, self._max_features))
            meta = dict(meta, **{FEATURES: {"n_items": part.n_items, "sha256": part.sha256}})
        embedding_shards.write(path, embedded, meta)
        logging.info("embedded %s: %d images in %.1f s", shard, len(embedded.image_ids), time.perf_counter() - t0)
        yield shard, "embedded"


def feature_parts(embed_dir: str, shards: Sequence[str], fingerprint: str, max_features: int
                  ) -> List[local_features.Part]:
    """The finished job's local-feature part of each shard, in shard order (their bytes are
    checked against these digests when the index build merges them); InputError when a shard has
    none for this model and `max_features`."""
    parts = []
    for shard in shards:
        path = embedding_shards.output_path(embed_dir, shard)
        meta = embedding_shards.read_meta(path) or {}
        features = meta.get(FEATURES)
        if meta.get(LOCAL_FEATURES) != max_features or meta.get("model_fingerprint") != fingerprint or not (
                isinstance(features, dict) and isinstance(features.get("n_items"), int)
                and isinstance(features.get("sha256"), str)):
            raise InputError(f"{path} records no local features of {max_features} per image for this model: "
                               "the embedding job did not extract them; rerun it")
        parts.append(local_features.Part(local_features.part_path(embed_dir, shard), features["n_items"],
                                         features["sha256"]))
    return parts


class EmbedShards(beam.PTransform):
    """PCollection of shard paths -> one (shard, status) per shard, its embeddings in EMB."""

    def __init__(self, export_dir: str, fingerprint: str, embed_dir: str, batch_size: int,
                 max_features: int = 0, tta: str = "none") -> None:
        super().__init__()
        self._fn = _EmbedShardFn(export_dir, fingerprint, embed_dir, batch_size, max_features, tta)

    def expand(self, shards):
        return (
            shards
            | "SpreadShards" >> beam.Reshuffle()  # shards are heavy: never fuse them onto one worker
            | "EmbedShard" >> beam.ParDo(self._fn)
        )


def unknown_options(beam_args: Sequence[str]) -> List[str]:
    """The passthrough flags no Beam options class knows (a typo of this command's own flags
    would otherwise be dropped by Beam with a warning while choosing the Beam path)."""
    if any(a.startswith("--dask_") for a in beam_args):
        import apache_beam.runners.dask.dask_runner  # noqa: F401 - defines the --dask_* options

    options = PipelineOptions(list(beam_args))
    beam_log = std_logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_log.level
    beam_log.setLevel(std_logging.ERROR)  # its "Discarding unparseable args" warning: our error says it
    try:
        known = options.get_all_options()
    finally:
        beam_log.setLevel(level)
    return sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))


def pipeline_options(beam_args: Sequence[str], dask_address: str = "", dask_workers: int = 0) -> PipelineOptions:
    """Beam options from the passthrough flags, refusing unknown ones; `--runner=dask` becomes the
    DaskRunner (on `dask_address` when given). On the DaskRunner a partition is a unit of work,
    and its default of 128 elements per partition would put every shard on one worker: unless
    told otherwise, each shard gets its own partition."""
    unknown = unknown_options(beam_args)
    if unknown:
        raise SettingsError(f"unknown flag(s): {', '.join('--' + u for u in unknown)} (neither this command's nor "
                            f"Beam pipeline options)")
    options = PipelineOptions(list(beam_args))
    on_dask = dask_setup.is_dask(options.view_as(StandardOptions).runner)
    if on_dask:
        dask_setup.one_task_per_element(options)
        dask_setup.configure(options, dask_address)
    elif dask_address or dask_workers:
        raise SettingsError("--dask_address / --dask_workers need --runner=dask")
    return options


def embed_with_beam(files: Sequence[str], export_dir: str, embed_dir: str, batch_size: int,
                    beam_args: Sequence[str], dask_address: str = "", dask_workers: int = 0,
                    progress: Optional[console.Progress] = None, max_features: int = 0,
                    tta: str = "none") -> Embedded:
    """Run the job over `files` (resuming whatever EMB already holds) and return the embeddings in
    file order; `progress` counts the shards done and their images as the job goes (embed_progress.py);
    `max_features`: also extract up to that many SIFT features per image (`feature_parts`); `tta`: the
    test-time augmentation every worker embeds with (indexer/embedding/tta.py)."""
    import tensorflow as tf

    dimension = int(check_export(export_dir)["embedding_dim"])
    fingerprint = model_fingerprint(export_dir)
    tf.io.gfile.makedirs(embed_dir)
    embedding_shards.remove_stale_temporaries(embed_dir)
    local_features.remove_stale_temporaries(embed_dir)
    options = pipeline_options(beam_args, dask_address, dask_workers)
    t0 = time.perf_counter()
    with dask_setup.cluster_if_needed(options, dask_workers):
        p = beam.Pipeline(options=options)
        _ = p | "ShardPaths" >> beam.Create(list(files)) | "EmbedShards" >> EmbedShards(
            export_dir, fingerprint, embed_dir, batch_size, max_features, tta)
        with embed_progress.watching(embed_dir, files, fingerprint, progress, tta):
            dask_setup.run_to_end(p, options)
    embedded = embedding_shards.gather(embed_dir, files, fingerprint, dimension, tta)
    logging.info("Beam job (%s): %d shards, %d images in %s, %.1f s", options.view_as(StandardOptions).runner
                 or "DirectRunner", len(files), len(embedded.image_ids), embed_dir, time.perf_counter() - t0)
    return embedded
