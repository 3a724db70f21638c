"""`make bench-scale` (`python -m bench.bench_scale [--smoke] [--sections=...]`): how the heavy stages
scale, each section measured side by side in one run and printed as its own table.

Sections (each a module with `NAME`, `run(smoke)`; its flags are its own):
- `dask` (bench/scale_dask.py): preprocessing on a local Dask cluster, 1 worker against 2 (1 thread
  each), on the same CPU-bound `file://` JPEG input: seconds, workers' CPU, build tasks, output
  byte-identical to the DirectRunner's, the speedup (`--dask_rows`, `--dask_shards`).
- `neighbours` (bench/scale_neighbours.py): the other-landmark penalty and DBA at N = 10^4, 10^5,
  10^6 generated references: seconds, peak memory, fitted exponent, agreement with the exact path.
- `local_features` (bench/scale_local_features.py): the spatial-verification store per reference
  (bytes, extraction core-seconds) through the embedding job's per-shard steps, projected to 1.2M
  references, and the hashing an index open no longer does.

`--smoke` runs every section on tiny inputs in seconds (tests/bench keeps it from rotting).
"""

from __future__ import annotations

import sys

from absl import app, flags

from bench import scale_dask, scale_local_features, scale_neighbours

FLAGS = flags.FLAGS
flags.DEFINE_integer("dask_rows", scale_dask.Setup.rows, "dask section: file:// JPEG rows to preprocess")
flags.DEFINE_integer("dask_shards", scale_dask.Setup.shards, "dask section: train shards they are planned into")


class DaskSection:
    """Preprocessing on a local Dask cluster, 1 worker against 2 (bench/scale_dask.py)."""

    NAME = "dask"

    @staticmethod
    def run(smoke: bool) -> None:
        setup = scale_dask.SMOKE if smoke else scale_dask.Setup(rows=FLAGS.dask_rows, shards=FLAGS.dask_shards)
        print(scale_dask.report(scale_dask.run(setup=setup), setup), flush=True)


SECTIONS = (DaskSection, scale_neighbours, scale_local_features)

flags.DEFINE_bool("smoke", False, "tiny inputs: checks that every section runs, in seconds (no figures to quote)")
flags.DEFINE_list("sections", [s.NAME for s in SECTIONS], "which sections to run, in this order")


def main(argv) -> None:
    del argv
    by_name = {s.NAME: s for s in SECTIONS}
    unknown = [name for name in FLAGS.sections if name not in by_name]
    if unknown:
        sys.exit(f"bench_scale: unknown section(s) {unknown}; expected some of {sorted(by_name)}")
    for name in FLAGS.sections:
        print(f"== {name} ==", flush=True)
        by_name[name].run(FLAGS.smoke)


if __name__ == "__main__":
    app.run(main)
