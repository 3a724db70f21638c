"""`bench.smoke.parse_args`: --smoke swaps in the smoke sizes; flags on the command line still win."""

from __future__ import annotations

import argparse

from bench import smoke


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--modes", default="a,b")
    return ap


def test_without_smoke_the_defaults_stand(capsys):
    args = smoke.parse_args(parser(), {"rows": 8, "modes": "a"}, [])
    assert (args.rows, args.modes, args.smoke) == (10_000, "a,b", False)
    assert capsys.readouterr().out == ""


def test_smoke_sizes_apply_unless_given_and_the_banner_says_so(capsys):
    args = smoke.parse_args(parser(), {"rows": 8, "modes": "a"}, ["--smoke", "--modes=b"])
    assert (args.rows, args.modes, args.smoke) == (8, "b", True)
    assert capsys.readouterr().out == smoke.BANNER + "\n"


def test_known_mode_passes_other_flags_through():
    args, rest = smoke.parse_args(parser(), {"rows": 8}, ["--smoke", "--fetch_timeout=1"], known=True)
    assert (args.rows, rest) == (8, ["--fetch_timeout=1"])
