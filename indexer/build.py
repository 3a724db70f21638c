"""`python -m indexer.build --model=OUT/export --data_dir=RECORDS --output_dir=IDX [--n_trees] [--num_shards]`

Embeds the reference shards (train and val by default) with the exported model and writes a
self-contained index folder (index_dir.py): Annoy shards, item sidecar, a copy of the model and
a manifest that `indexer.predict` checks before loading anything. IDX/config.json records the
flags. A rerun after a crash starts over and replaces whatever the crash left.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Optional, Tuple

from absl import app, flags, logging

from indexer import confidence, embed_job, outputs, rerank, tta
from indexer.embed import Embedder, expected_records, list_shards
from indexer.index_dir import write_index
from indexer.api import FALLBACK_IMAGE_SIZE
from indexer.nonlandmark import embed_nonlandmarks
from pipelines import console
from pipelines.cli_errors import InputError, absl_main
from trainer import shard_check

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
    flags.DEFINE_integer("seed", 0, "Annoy's random seed (same inputs + seed: same index)")
    embed_job.define_flags()
    flags.DEFINE_bool("skip_corrupt_records", False, "damaged reference shards: index the records before the first "
                      "damaged one of each (counted in the log) instead of stopping with an error naming the file")
    flags.DEFINE_enum("tta", "none", tta.MODES, "test-time augmentation of the embedding (prediction follows)")
    flags.DEFINE_integer("dba_k", 0, "database-side augmentation: each reference averaged with its k nearest "
                         "(itself included; 0 = off; indexer/rerank.py)")
    flags.DEFINE_float("dba_alpha", 3.0, "--dba_k: neighbour weight = similarity^alpha")
    flags.DEFINE_string("nonlandmark_csv", None, "id,url CSV of photos showing no landmark: stores each reference's "
                        "non-landmark penalty (indexer/confidence.py)")
    flags.DEFINE_integer("nonlandmark_k", 5, "penalty = mean similarity to this many most similar non-landmarks")
    flags.DEFINE_integer("image_size", 0, "--nonlandmark_csv preprocessing size; 0: what the references were "
                         "stored at (their shard_index.json)")
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
    embedding: embed_job.EmbedSettings = embed_job.EmbedSettings()
    skip_corrupt_records: bool = False
    tta: str = "none"
    dba_k: int = 0
    dba_alpha: float = 3.0
    nonlandmark_csv: Optional[str] = None
    nonlandmark_k: int = 5
    image_size: int = 0


def build(config: BuildConfig) -> None:
    """Embed the references and commit the index folder; logs counts and timings."""
    if config.n_trees < 1 or config.num_shards < 1:
        raise InputError("--n_trees and --num_shards must be at least 1")
    files = list_shards(config.data_dir, config.splits)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(config.splits)} shards in {config.data_dir}")
    if config.skip_corrupt_records:
        shard_check.scan_all(files, log=logging.warning)
    t0 = time.perf_counter()
    with console.Progress("references embedded", expected_records(config.data_dir, config.splits), "img") as progress:
        embedded = embed_job.embed_shards(files, config.model, config.batch_size, config.embedding,
                                          os.path.join(config.output_dir, "embeddings"), config.skip_corrupt_records,
                                          progress, config.tta)
    t1 = time.perf_counter()
    if not embedded.image_ids:
        raise InputError(f"the {len(files)} reference shard(s) in {config.data_dir} hold no records")
    logging.info("embedded %d reference images from %d shards in %.1f s (%.0f img/s)",
                 len(embedded.image_ids), len(files), t1 - t0, len(embedded.image_ids) / (t1 - t0))
    if config.dba_k > 1:
        embedded = dataclasses.replace(
            embedded, vectors=rerank.database_augmentation(embedded.vectors, config.dba_k, config.dba_alpha))
    from trainer import records_info  # imports TensorFlow: only after console.setup (quiet start-up)

    stored = records_info.load(config.data_dir)  # the stored image size, for predict's test images
    stored_size = stored.image_size if stored else 0
    extras: Dict = {}
    if config.nonlandmark_csv:
        others = embed_nonlandmarks(config.nonlandmark_csv, config.output_dir, Embedder(config.model),
                                    config.image_size or stored_size or FALLBACK_IMAGE_SIZE, config.batch_size,
                                    config.tta)
        extras[confidence.PENALTIES] = confidence.reference_penalties(embedded.vectors, others, config.nonlandmark_k)
        logging.info("non-landmark penalties of %d references from %d photos", len(embedded.image_ids), len(others))
    logging.info("building %d Annoy tree(s) x %d shard(s) over %d items (one call per shard: no progress until done)",
                 config.n_trees, config.num_shards, len(embedded.image_ids))
    t1 = time.perf_counter()
    manifest = write_index(config.output_dir, embedded, config.model, config.n_trees, config.num_shards,
                           config.data_dir, config.splits, config.seed, stored_size, extras, config.tta)
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
        embedding=embed_job.settings_from_flags(argv),
        skip_corrupt_records=FLAGS.skip_corrupt_records,
        tta=FLAGS.tta,
        dba_k=FLAGS.dba_k,
        dba_alpha=FLAGS.dba_alpha,
        nonlandmark_csv=FLAGS.nonlandmark_csv,
        nonlandmark_k=FLAGS.nonlandmark_k,
        image_size=FLAGS.image_size,
    ))


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("indexer.build", main), flags_parser=embed_job.parse_flags)
