"""`--runner=dask`: the flags reach Beam's DaskRunner as its own options (no cluster needed)."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import preprocess
from pipelines.graph import dask_setup

DaskOptions = pytest.importorskip("apache_beam.runners.dask.dask_runner").DaskOptions


def options(*flags: str):
    cfg, beam_args = preprocess.parse_args(["--csv=a.csv", "--output_dir=out", *flags])
    return preprocess.pipeline_options(cfg, beam_args, csv_bytes=100)


def test_short_name_and_address_become_beam_options():
    opts = options("--runner=dask", "--dask_address=tcp://10.0.0.1:8786")
    assert opts.view_as(StandardOptions).runner == dask_setup.DASK_RUNNER
    assert opts.view_as(DaskOptions).address == "tcp://10.0.0.1:8786"
    assert dask_setup.has_address(opts)


def test_beams_own_address_flag_wins_and_no_address_means_a_local_cluster():
    opts = options("--runner=DaskRunner", "--dask_address=tcp://a:1", "--dask_client_address=tcp://b:2")
    assert opts.view_as(DaskOptions).address == "tcp://b:2"
    assert not dask_setup.has_address(options("--runner=dask", "--dask_workers=3"))
    assert not dask_setup.is_dask(options().view_as(StandardOptions).runner)


def test_negative_worker_count_is_refused():
    with pytest.raises(SystemExit):
        preprocess.parse_args(["--csv=a.csv", "--output_dir=out", "--dask_workers=-1"])


def test_dask_flags_without_the_dask_runner_are_refused():
    with pytest.raises(SystemExit, match="need --runner=dask"):
        options("--dask_workers=2")
