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
