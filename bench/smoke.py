"""`--smoke`: a benchmark's own code path, run in seconds on tiny generated input.

Every benchmark takes `--smoke`. It then runs exactly as without it, but each size flag its
`SMOKE` table names takes that table's value unless the command line gives one, and its output
starts with `BANNER`. Its figures measure nothing; `make test` (tests/bench) runs each smoke mode
and checks its output's shape and sanity, so a benchmark that no longer runs fails the tests the
day it breaks instead of the day someone next benches.
"""

from __future__ import annotations

import argparse
from typing import Any, List, Mapping, Optional

BANNER = "SMOKE MODE: tiny generated input; these figures show the benchmark runs, they measure nothing"
HELP = "run in seconds on tiny generated input (the same code path; the figures mean nothing)"


def parse_args(ap: argparse.ArgumentParser, smoke: Mapping[str, Any], argv: Optional[List[str]] = None,
               known: bool = False):
    """`ap.parse_args` (`parse_known_args` when `known`), with `--smoke` added: when it is given,
    `smoke`'s {dest: value} become the defaults, so flags given on the command line still win."""
    ap.add_argument("--smoke", action="store_true", help=HELP)
    first, _ = ap.parse_known_args(argv)
    if first.smoke:
        ap.set_defaults(**smoke)
        print(BANNER, flush=True)
    return ap.parse_known_args(argv) if known else ap.parse_args(argv)


def define_absl_flag() -> None:
    """Defines `--smoke` among absl's flags (for benchmarks run with `absl.app.run`)."""
    from absl import flags

    flags.DEFINE_bool("smoke", False, HELP)


def apply_absl(smoke: Mapping[str, Any]) -> None:
    """After absl parsed the command line: with `--smoke`, `smoke`'s {flag: value} for every flag
    not given on the command line."""
    from absl import flags

    if not flags.FLAGS.smoke:
        return
    for name, value in smoke.items():
        flags.FLAGS.set_default(name, value)  # a flag given on the command line keeps its value
    print(BANNER, flush=True)
