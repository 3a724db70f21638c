"""`--runner=dask`: Beam's DaskRunner on a given Dask cluster, or on a local one started for the run.

    --runner=dask --dask_address=tcp://HOST:8786   a running cluster (`dask scheduler` + workers,
                                                  or Kubernetes / YARN / HPC deployments)
    --runner=dask [--dask_workers=N]              a local cluster of N worker processes (default:
                                                  one per core), stopped when the run ends

Beam's own spelling works too (`--runner=apache_beam.runners.dask.dask_runner.DaskRunner
--dask_client_address=...`). Without an address, Beam itself would start a default
`distributed.LocalCluster` and never close it; here the local cluster is explicit, one thread
per worker process (`BuildShards` runs its own fetch threads) and closed at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_SHORT_NAMES = {"dask", "daskrunner", DASK_RUNNER.lower()}

_LOG = logging.getLogger(__name__)


def is_dask(runner: Optional[str]) -> bool:
    return bool(runner) and runner.lower() in _SHORT_NAMES


def configure(options: PipelineOptions, address: str) -> None:
    """Point `options` at the DaskRunner's class, and at `address` unless the caller gave Beam's
    own `--dask_client_address` / `--dask_scheduler_file`."""
    from apache_beam.runners.dask.dask_runner import DaskOptions  # needs apache-beam[dask]

    options.view_as(StandardOptions).runner = DASK_RUNNER
    dask = options.view_as(DaskOptions)
    if address and not dask.address and not dask.scheduler_file:
        dask.address = address


def one_task_per_element(options: PipelineOptions) -> None:
    """One Dask partition per element of each `Create`, unless the caller chose a partitioning
    (`--dask_partition_size` / `--dask_npartitions`). Beam 2.77's DaskRunner takes its partitions
    from `Create` alone (128 elements each by default) and keeps them through every ParDo, so this
    is what gives the build one task per shard and the tar lookup one task per tar."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    if not dask.partition_size and not dask.npartitions:
        dask.partition_size = 1


def has_address(options: PipelineOptions) -> bool:
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    return bool(dask.address or dask.scheduler_file)


def scheduler_address(options: PipelineOptions) -> str:
    """The scheduler address the run will connect to ("" when it names a scheduler file instead)."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    return options.view_as(DaskOptions).address or ""


def close_client(result) -> None:
    """Close the scheduler connection that the DaskRunner opens per run and never closes."""
    client = getattr(result, "client", None)
    if client is not None:
        client.close()


@contextlib.contextmanager
def local_cluster(workers: int = 0) -> Iterator[str]:
    """A `distributed.LocalCluster` of `workers` processes (0: one per core) on 127.0.0.1, one
    thread each; yields its scheduler address and closes it on exit."""
    from distributed import LocalCluster  # only Dask runs import it

    n = workers or len(os.sched_getaffinity(0))
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        _LOG.info("started a local Dask cluster of %d worker processes at %s", n, cluster.scheduler_address)
        yield cluster.scheduler_address
    finally:
        cluster.close()


@contextlib.contextmanager
def cluster_if_needed(options: PipelineOptions, workers: int = 0) -> Iterator[None]:
    """On a Dask job that names no scheduler, a `local_cluster` of `workers` for the job's duration
    (`options` then point at it); otherwise nothing."""
    if not is_dask(options.view_as(StandardOptions).runner) or has_address(options):
        yield
        return
    with local_cluster(workers) as address:
        configure(options, address)
        yield


def run_to_end(pipeline, options: PipelineOptions) -> None:
    """Run `pipeline` and wait for it. A Dask scheduler that cannot be reached is a one-line
    InputError; the DaskRunner's scheduler connection is closed afterwards."""
    from pipelines.cli import cli_errors

    try:
        result = pipeline.run()  # the DirectRunner runs the whole job here
    except OSError as err:  # distributed: "Timed out trying to connect to tcp://..."
        if not is_dask(options.view_as(StandardOptions).runner):
            raise
        raise cli_errors.InputError(f"the Dask scheduler cannot be reached ({cli_errors.one_line(err)}): is it "
                                    "running at --dask_address?") from None
    try:
        result.wait_until_finish()
    finally:
        close_client(result)


def bag_partitions(pipeline, options: PipelineOptions) -> dict:
    """{transform's full label: Dask partitions = tasks} of `pipeline` as Beam 2.77's DaskRunner
    translates it with `options`' partitioning (read off the graph; nothing runs)."""
    from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor(DaskOptions._extract_bag_kwargs(dask_options))
    pipeline.visit(visitor)
    return {node.full_label: bag.npartitions for node, bag in visitor.bags.items() if hasattr(bag, "npartitions")}
