"""`make bench-scale` (`python -m bench.bench_scale [--smoke] [--sections=...]`): how the heavy stages
scale, each section measured side by side in one run and printed as its own table.

Sections (each a module with `NAME`, `run(smoke)`; its flags are its own):
- `neighbours` (bench/scale_neighbours.py): the other-landmark penalty and DBA at N = 10^4, 10^5,
  10^6 generated references: seconds, peak memory, fitted exponent, agreement with the exact path.

`--smoke` runs every section on tiny inputs in seconds (tests/unit/bench keeps it from rotting).
"""

from __future__ import annotations

import sys

from absl import app, flags

from bench import scale_neighbours

SECTIONS = (scale_neighbours,)

FLAGS = flags.FLAGS
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
