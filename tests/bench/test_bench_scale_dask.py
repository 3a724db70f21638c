"""`python -m bench.scale_dask --smoke`: the Dask scaling bench's steps on a tiny input (its
timing means nothing here; the full run is `python -m bench.scale_dask`, docs/scale.md)."""

from __future__ import annotations

import pytest

from bench import scale_dask

pytest.importorskip("distributed", reason="apache-beam[dask] is not installed")


def test_smoke_run_builds_one_task_per_shard_and_matches_the_direct_runner():
    results = scale_dask.run(smoke=True)

    assert [r.workers for r in results] == [1, 2]
    for r in results:
        assert r.identical, f"{r.workers} worker(s): output differs from the DirectRunner's"
        assert r.shards == scale_dask.SMOKE.shards and r.build_tasks == r.shards
        assert 0 < r.cluster_s <= r.seconds
        # the cluster ran the build alone, one task per shard (the plan runs in the submitting
        # process and the report merges the markers there: no shuffle)
        assert r.tasks_run == r.shards
    text = scale_dask.report(results, scale_dask.SMOKE)
    assert "speedup 2 workers / 1 worker:" in text and "| 2 |" in text and "Amdahl" in text
