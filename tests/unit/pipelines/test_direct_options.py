"""DirectRunner runs go straight to Beam's FnApiRunner, without first trying the PrismRunner."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines import preprocess


def options(*flags: str):
    cfg, beam_args = preprocess.parse_args(["--csv=a.csv", "--output_dir=out", *flags])
    return preprocess.pipeline_options(cfg, beam_args, csv_bytes=100)


def test_direct_runs_skip_prism(caplog):
    caplog.set_level(logging.INFO, logger="apache_beam.runners.direct.direct_runner")
    p = beam.Pipeline(options=options("--direct_running_mode=in_memory"))
    assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: x * 10), equal_to([10, 20]))
    result = p.run()
    result.wait_until_finish()
    assert type(result).__module__.endswith("fn_api_runner.fn_runner")  # the FnApiRunner ran it
    assert not [r.getMessage() for r in caplog.records if "Prism" in r.getMessage()]


def test_other_runners_get_no_direct_runner_flags():
    assert "--allow_unsafe_triggers" not in options("--runner=DataflowRunner", "--project=p", "--region=r",
                                                    "--temp_location=gs://b/t").get_all_options(retain_unknown_options=True)


def test_default_mode_one_process_for_small_inputs_and_two_cores():
    mode = preprocess.default_direct_mode
    assert mode(csv_bytes=100, cores=16, in_memory_below_rows=5000) == "in_memory"  # ~2 rows
    assert mode(csv_bytes=50 * 10_000, cores=2, in_memory_below_rows=5000) == "in_memory"
    assert mode(csv_bytes=50 * 10_000, cores=8, in_memory_below_rows=5000) == "multi_processing"
    assert mode(csv_bytes=50 * 4_000, cores=8, in_memory_below_rows=5000) == "in_memory"


def test_the_default_mode_reaches_the_options_and_an_explicit_one_wins(monkeypatch):
    monkeypatch.setattr(preprocess.os, "sched_getaffinity", lambda _pid: set(range(8)))
    cfg, beam_args = preprocess.parse_args(["--csv=a.csv", "--output_dir=out"])
    big = preprocess.pipeline_options(cfg, beam_args, csv_bytes=50 * 10_000).get_all_options()
    assert big["direct_running_mode"] == "multi_processing" and big["direct_num_workers"] == 8
    cfg, beam_args = preprocess.parse_args(["--csv=a.csv", "--output_dir=out", "--direct_running_mode=in_memory"])
    assert preprocess.pipeline_options(cfg, beam_args, csv_bytes=50 * 10_000).get_all_options()["direct_running_mode"] == "in_memory"
