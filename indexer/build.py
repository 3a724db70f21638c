"""`python -m indexer.build --model=OUT/export --data_dir=RECORDS --output_dir=IDX [--n_trees] [--num_shards]`

Embeds the reference shards (train and val by default) with the exported model and writes a
self-contained index folder (index_dir.py): Annoy shards, item sidecar, a copy of the model and
a manifest that `indexer.predict` checks before loading anything. IDX/config.json records the
flags. A rerun after a crash starts over and replaces whatever the crash left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from absl import app, flags, logging

from indexer import outputs
from indexer.embedding import embed_job, tta
from indexer.ranking import confidence, neighbours, rerank
from indexer.embedding.embed import (Embedded, Embedder, expected_records, iter_jpegs, list_shards,
                                     model_fingerprint)
from indexer.store.index_dir import write_index
from indexer.api import FALLBACK_IMAGE_SIZE
from indexer.ranking.nonlandmark import embed_nonlandmarks
from pipelines.cli import console, flag_checks
from pipelines.cli.cli_errors import InputError, absl_main
from trainer.input import shard_check

# Defaults from bench/bench_index.py (docs/index.md): 1M x 256 clustered vectors.
DEFAULT_N_TREES = 50

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line (defined only when run as a program, so modules import side-effect free)."""
    flags.DEFINE_string("model", None, "export folder of a training run (OUT/export, see trainer/contract.py)")
    flags.DEFINE_string("data_dir", None, "folder of reference TFRecord shards (pipelines.preprocess output)")
    flags.DEFINE_string("output_dir", None, "index folder to write")
    flags.DEFINE_integer("n_trees", DEFAULT_N_TREES, "Annoy trees per shard (more: better recall, bigger file)")
    flags.DEFINE_integer("num_shards", 1, "Annoy indexes to split the references over, built in parallel")
    flags.DEFINE_list("splits", ["train", "val"], "which splits of --data_dir are references")
    flags.DEFINE_integer("batch_size", 64, "images per embedding batch")
    flags.DEFINE_integer("seed", 0, "Annoy's random seed (same inputs + seed: same search results)")
    flags.DEFINE_bool("deterministic", False, "build each Annoy shard on one thread, so the same inputs + seed give "
                      "the same index file byte for byte (threads append trees in the order they finish)")
    embed_job.define_flags()
    flags.DEFINE_bool("skip_corrupt_records", False, "damaged reference shards: index the records before the first "
                      "damaged one of each (counted in the log) instead of stopping with an error naming the file")
    flags.DEFINE_string("tta", "none", "test-time augmentation of the embedding, recorded in the index (prediction "
                        "follows): none, or any of flip (+ the mirror image), multiscale (sizes S/sqrt2, S, S*sqrt2) "
                        "separated by commas, e.g. flip,multiscale (indexer/embedding/tta.py)")
    flags.DEFINE_integer("dba_k", 0, "database-side augmentation: each reference averaged with its k nearest "
                         "(itself included; 0 = off; indexer/ranking/rerank.py)")
    flags.DEFINE_float("dba_alpha", 3.0, "--dba_k: neighbour weight = similarity^alpha")
    flags.DEFINE_string("nonlandmark_csv", None, "id,url CSV of photos showing no landmark: stores each reference's "
                        "non-landmark penalty (indexer/ranking/confidence.py)")
    flags.DEFINE_bool("other_landmark_penalty", False, "store each reference's penalty against the OTHER landmarks' "
                      "references instead (no non-landmark set needed; indexer/ranking/confidence.py)")
    flags.DEFINE_integer("nonlandmark_k", 5, "penalty = mean similarity to this many most similar non-landmarks "
                         "(or other landmarks' references)")
    flags.DEFINE_integer("neighbours_exact_below", neighbours.NeighbourSettings.exact_below,
                         "--dba_k and --other_landmark_penalty: exact O(N^2) neighbour search below this many "
                         "references, a temporary Annoy index (about N log N) from there up (indexer/ranking/neighbours.py)")
    flags.DEFINE_integer("neighbour_trees", neighbours.NeighbourSettings.n_trees,
                         "trees of that temporary Annoy index (more: closer to exact, slower)")
    flags.DEFINE_integer("image_size", 0, "--nonlandmark_csv preprocessing size; 0: what the references were "
                         "stored at (their shard_index.json)")
    flags.DEFINE_integer("local_features", 0, "store up to this many SIFT features per reference for spatial "
                         "verification at prediction (indexer/ranking/verify.py; 0 = off; 1000 at 224 px: 136 KB per "
                         "reference)")
    flags.mark_flags_as_required(["model", "data_dir", "output_dir"])


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    model: str
    data_dir: str
    output_dir: str
    n_trees: int
    num_shards: int
    splits: Tuple[str, ...]
    batch_size: int
    seed: int
    deterministic: bool = False
    embedding: embed_job.EmbedSettings = embed_job.EmbedSettings()
    skip_corrupt_records: bool = False
    tta: str = "none"
    dba_k: int = 0
    dba_alpha: float = 3.0
    nonlandmark_csv: Optional[str] = None
    nonlandmark_k: int = 5
    other_landmark_penalty: bool = False
    image_size: int = 0
    neighbours_exact_below: int = neighbours.NeighbourSettings.exact_below
    neighbour_trees: int = neighbours.NeighbourSettings.n_trees
    local_features: int = 0  # max SIFT features stored per reference (0: none)

    def __post_init__(self) -> None:
        """Every number checked once, before any work (pipelines/cli/flag_checks.py)."""
        flag_checks.integer("--n_trees", self.n_trees, 1)
        flag_checks.integer("--num_shards", self.num_shards, 1)
        flag_checks.integer("--batch_size", self.batch_size, 1)
        flag_checks.integer("--dba_k", self.dba_k, 0)
        flag_checks.number("--dba_alpha", self.dba_alpha, 0)
        flag_checks.integer("--nonlandmark_k", self.nonlandmark_k, 1)
        flag_checks.integer("--image_size", self.image_size, 0)
        flag_checks.integer("--local_features", self.local_features, 0, 65535)
        if tta.parse(self.tta) != self.tta:  # (SettingsError when it is no mode at all)
            raise flag_checks.SettingsError(f"--tta={self.tta}: write it as --tta={tta.parse(self.tta)}")
        if self.nonlandmark_csv and self.other_landmark_penalty:
            raise InputError("--nonlandmark_csv and --other_landmark_penalty both set a penalty: choose one")
        flag_checks.integer("--neighbours_exact_below", self.neighbours_exact_below, 0)
        flag_checks.integer("--neighbour_trees", self.neighbour_trees, 1)


def reference_images(files: Sequence[str], embedded: Embedded, skip_corrupt: bool,
                     progress: console.Progress, per_shard: Optional[List[int]] = None) -> Iterator[bytes]:
    """Each item's encoded image, in item order, read again from the shards it was embedded from;
    appends each shard's record count to `per_shard` as it goes (the store's segments)."""
    count = 0
    for path in files:
        start = count
        for image_id, jpeg in iter_jpegs([path], skip_corrupt):
            count += 1
            if count > len(embedded.image_ids) or embedded.image_ids[count - 1] != image_id:
                raise InputError(f"the reference shards in {os.path.dirname(files[0])} changed while the index was "
                                 f"built (record {count} is {image_id!r}): build it again")
            progress.update(1)
            yield jpeg
        if per_shard is not None:
            per_shard.append(count - start)


def build(config: BuildConfig) -> None:
    """Embed the references and commit the index folder; logs counts and timings."""
    tta.require_export(config.model, config.tta)  # before anything is written
    flag_checks.output_dir(config.output_dir)
    files = list_shards(config.data_dir, config.splits)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(config.splits)} shards in {config.data_dir}")
    expected = expected_records(config.data_dir, config.splits)  # None when stats.json cannot say
    if expected and config.num_shards > expected:  # (checked again on the embeddings)
        raise InputError(f"--num_shards={config.num_shards}: more Annoy shards than the {expected} references; "
                         "use at most that many")
    if config.skip_corrupt_records:
        shard_check.scan_all(files, log=logging.warning)  # (absl adds the WARNING prefix)
    t0 = time.perf_counter()
    embed_dir = config.embedding.embed_dir or os.path.join(config.output_dir, "embeddings")
    on_beam = embed_job.choose(config.embedding, files) == "beam"
    with console.Progress("references embedded" + (" (and their local features)" if on_beam and config.local_features
                                                   else ""), expected, "img") as progress:
        embedded = embed_job.embed_shards(files, config.model, config.batch_size, config.embedding, embed_dir,
                                          config.skip_corrupt_records, progress, config.tta, config.local_features)
    t1 = time.perf_counter()
    if not embedded.image_ids:
        raise InputError(f"the {len(files)} reference shard(s) in {config.data_dir} hold no records")
    if config.num_shards > len(embedded.image_ids):
        raise InputError(f"--num_shards={config.num_shards}: more Annoy shards than the {len(embedded.image_ids)} "
                         "references; use at most that many")
    logging.info("embedded %d reference images from %d shards in %.1f s (%.0f img/s)",
                 len(embedded.image_ids), len(files), t1 - t0, len(embedded.image_ids) / (t1 - t0))
    search = neighbours.NeighbourSettings(exact_below=config.neighbours_exact_below, n_trees=config.neighbour_trees,
                                          seed=config.seed, scratch_dir=config.output_dir)
    if config.dba_k > 1:
        embedded = dataclasses.replace(embedded, vectors=rerank.database_augmentation(
            embedded.vectors, config.dba_k, config.dba_alpha, search=search))
    from trainer.input import records_info  # imports TensorFlow: only after console.setup (quiet start-up)

    stored = records_info.load(config.data_dir)  # the stored image size, for predict's test images
    stored_size = stored.image_size if stored else 0
    extras: Dict = {}
    if config.nonlandmark_csv:
        others = embed_nonlandmarks(config.nonlandmark_csv, config.output_dir, Embedder(config.model),
                                    config.image_size or stored_size or FALLBACK_IMAGE_SIZE, config.batch_size,
                                    config.tta)
        extras[confidence.PENALTIES] = confidence.reference_penalties(embedded.vectors, others, config.nonlandmark_k)
        logging.info("non-landmark penalties of %d references from %d photos", len(embedded.image_ids), len(others))
    if config.other_landmark_penalty:
        try:
            extras[confidence.PENALTIES] = confidence.other_landmark_penalties(
                embedded.vectors, embedded.landmark_ids, config.nonlandmark_k, search=search)
        except ValueError as e:
            raise InputError(f"--other_landmark_penalty: {e}") from e
        logging.info("other-landmark penalties of %d references", len(embedded.image_ids))
    logging.info("building %d Annoy tree(s) x %d shard(s) over %d items (one call per shard: no progress until done)",
                 config.n_trees, config.num_shards, len(embedded.image_ids))
    t1 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        images, per_shard, parts = None, [], None
        if config.local_features and on_beam:  # extracted by the embedding job, per shard: merged here
            from indexer.embedding.beam_embed import feature_parts

            parts = feature_parts(embed_dir, files, model_fingerprint(config.model), config.local_features)
        elif config.local_features:
            progress = stack.enter_context(console.Progress("local features extracted", len(embedded.image_ids), "img"))
            images = reference_images(files, embedded, config.skip_corrupt_records, progress, per_shard)
        manifest = write_index(config.output_dir, embedded, config.model, config.n_trees, config.num_shards,
                               config.data_dir, config.splits, config.seed, stored_size, extras, config.tta,
                               images, config.local_features, config.deterministic, per_shard, parts)
    outputs.write_json(os.path.join(config.output_dir, "config.json"), dataclasses.asdict(config))
    logging.info("index of %d items, dimension %d, %d shard(s) x %d trees written to %s in %.1f s",
                 manifest.n_items, manifest.dimension, len(manifest.shards), manifest.n_trees,
                 config.output_dir, time.perf_counter() - t1)


def main(argv) -> None:
    console.setup(FLAGS.verbosity, tensorflow=True)
    build(BuildConfig(
        model=FLAGS.model,
        data_dir=FLAGS.data_dir,
        output_dir=FLAGS.output_dir,
        n_trees=FLAGS.n_trees,
        num_shards=FLAGS.num_shards,
        splits=tuple(FLAGS.splits),
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        deterministic=FLAGS.deterministic,
        embedding=embed_job.settings_from_flags(argv),
        skip_corrupt_records=FLAGS.skip_corrupt_records,
        tta=tta.parse(FLAGS.tta),
        dba_k=FLAGS.dba_k,
        dba_alpha=FLAGS.dba_alpha,
        nonlandmark_csv=FLAGS.nonlandmark_csv,
        nonlandmark_k=FLAGS.nonlandmark_k,
        other_landmark_penalty=FLAGS.other_landmark_penalty,
        image_size=FLAGS.image_size,
        neighbours_exact_below=FLAGS.neighbours_exact_below,
        neighbour_trees=FLAGS.neighbour_trees,
        local_features=FLAGS.local_features,
    ))


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("indexer.build", main), flags_parser=embed_job.parse_flags)
