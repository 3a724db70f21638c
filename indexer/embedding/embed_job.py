"""How `indexer.build` and `indexer.predict` embed their shards: in this process, or as a Beam job.

Flags (both commands):
  --embed_runner=auto|local|beam  local: one process, tf.data over all shards (embed.py). beam: a
                                  Beam job with one work item per shard, resumable per shard
                                  (beam_embed.py). auto (default): beam when Beam options are
                                  given or the shards hold at least AUTO_BEAM_MIN_RECORDS records
                                  (counted from the preprocessing's stats.json), else local.
  --embed_dir=DIR                 where the Beam job keeps one embeddings file per shard
                                  (default: <output_dir>/embeddings); gs:// for remote workers.
  --runner=dask [--dask_address=tcp://HOST:PORT | --dask_workers=N]
                                  the Beam job on a Dask cluster, or on a local one started for
                                  the run, as `pipelines.preprocess` (pipelines/graph/dask_setup.py).
Any other flag the command does not know is a Beam pipeline option, passed through as
`pipelines.preprocess` does (--runner, --direct_num_workers, --dask_client_address, ...).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags, logging

from indexer.embedding import tta as augment
from indexer.embedding.embed import Embedded, Embedder, embed_records, expected_records
from pipelines import schema
from pipelines.cli import console
from pipelines.cli.cli_errors import SettingsError

RUNNERS = ("auto", "local", "beam")
# From this many records on, a one-process run takes long enough (20k InceptionV3 embeddings: about
# 20 minutes on 2 cores at the 7.6 images per CPU-second measured by bench/bench_embed.py,
# docs/scale.md) that per-shard resume and more workers pay for the job's start-up (seconds on
# the DirectRunner).
AUTO_BEAM_MIN_RECORDS = 20_000


@dataclasses.dataclass(frozen=True)
class EmbedSettings:
    runner: str = "auto"
    embed_dir: Optional[str] = None  # None: <output_dir>/embeddings
    beam_args: Tuple[str, ...] = ()
    dask_address: str = ""  # --runner=dask: the scheduler; empty: a local cluster for the run
    dask_workers: int = 0  # that local cluster's worker processes (0: one per core)


def define_flags() -> None:
    flags.DEFINE_enum("embed_runner", "auto", RUNNERS,
                      f"local: one process; beam: a Beam job, one work item per shard, resumable; auto: beam "
                      f"when Beam options are given or there are >= {AUTO_BEAM_MIN_RECORDS} records")
    flags.DEFINE_string("embed_dir", None, "the Beam job's per-shard embeddings (default: <output_dir>/embeddings)")
    flags.DEFINE_string("dask_address", "", "--runner=dask: scheduler address (empty: start a local cluster)")
    flags.DEFINE_integer("dask_workers", 0, "--runner=dask without an address: local worker processes (0: one "
                         "per core)", lower_bound=0)


def parse_flags(argv: List[str]) -> List[str]:
    """absl flags parser (`app.run(main, flags_parser=parse_flags)`) that leaves the flags it does
    not know in argv for `main`: they are Beam pipeline options."""
    try:
        return flags.FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\nPass --helpfull to see help on flags.\n")
        sys.exit(1)


def settings_from_flags(argv: Sequence[str]) -> EmbedSettings:
    """The parsed flags plus the passthrough Beam options (argv after the program name), checked
    now, before any work: a flag that is neither this command's nor Beam's is an error."""
    settings = EmbedSettings(flags.FLAGS.embed_runner, flags.FLAGS.embed_dir, tuple(argv[1:]),
                             flags.FLAGS.dask_address, flags.FLAGS.dask_workers)
    if settings.beam_args or settings.dask_address or settings.dask_workers:
        from indexer.embedding.beam_embed import pipeline_options

        choose(settings, [])  # Beam options with --embed_runner=local
        pipeline_options(settings.beam_args, settings.dask_address, settings.dask_workers)
    return settings


def record_count(files: Sequence[str]) -> Optional[int]:
    """Records in `files` as the preprocessing's stats.json (beside them) counts them per split;
    None when it cannot say."""
    if not files:
        return 0
    splits = sorted({schema.parse_shard_name(os.path.basename(p))[0] for p in files})
    return expected_records(os.path.dirname(files[0]), splits)


def choose(settings: EmbedSettings, files: Sequence[str]) -> str:
    """'local' or 'beam' for these shards."""
    if settings.runner == "local" and settings.beam_args:
        raise SettingsError(f"unknown flag(s) {' '.join(settings.beam_args)}: Beam options need --embed_runner=beam "
                         f"(or auto)")
    if settings.runner != "auto":
        return settings.runner
    if settings.beam_args:
        return "beam"
    n = record_count(files)
    return "beam" if n is not None and n >= AUTO_BEAM_MIN_RECORDS else "local"


def embed_shards(files: Sequence[str], export_dir: str, batch_size: int, settings: EmbedSettings,
                 default_dir: str, skip_corrupt: bool = False,
                 progress: Optional[console.Progress] = None, tta: str = "none", local_features: int = 0) -> Embedded:
    """Embed every record of `files` in file order, the way `settings` chooses, counting images on
    `progress` (the Beam job: per finished shard), with test-time augmentation `tta`
    (indexer/embedding/tta.py) on either path. `skip_corrupt` (each shard ends at its first damaged
    record) is for the in-process path. `local_features`: the Beam job also extracts up to that many SIFT features per image, per
    shard, in the same pass (beam_embed.feature_parts); the in-process path leaves them to the
    caller (indexer/build.py extracts them while it writes the index)."""
    how = choose(settings, files)
    if skip_corrupt and how != "local":
        raise SettingsError("--skip_corrupt_records needs --embed_runner=local: the Beam job stops at a damaged shard")
    augment.require_export(export_dir, tta)  # before any work, on the driver
    logging.info("embedding %d shard(s) %s", len(files), "in this process" if how == "local" else "as a Beam job")
    if how == "local":
        return embed_records(files, Embedder(export_dir), batch_size, tta, skip_corrupt, progress)
    from indexer.embedding.beam_embed import embed_with_beam  # Beam is imported only when used

    return embed_with_beam(files, export_dir, settings.embed_dir or default_dir, batch_size, settings.beam_args,
                           settings.dask_address, settings.dask_workers, progress, local_features, tta)
