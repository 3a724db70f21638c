"""The shard plan between the plan and build phases (pipelines/graph/shard_plan.py), and the build
phase's parallelism on Beam's DaskRunner, read off its translated graph (no cluster needed)."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import preprocess
from pipelines.graph import dask_setup, shard_plan
from pipelines.sources.csv_input import Failure, Row

ROWS = [Row("b", "b.jpg", "/x/b.jpg", 3, "train", (0, 2)), Row("a", "http://h/a", "http://h/a", -1, "train", (1, 7))]


def test_a_shard_plan_reads_back_as_the_task_it_was_written_from(tmp_path):
    for keep in (False, True):  # keep: a --retry_failed task (the shard keeps its other records)
        task = (("train", 1, 4), "digest", ROWS, keep)
        assert shard_plan.write_shard_plan(str(tmp_path), task) == "train-00001-of-00004.tfrecord"
        assert shard_plan.read_shard_plan(str(tmp_path), "train-00001-of-00004.tfrecord") == task
    shard_plan.remove(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_write_plan_then_read_summary_gives_the_reports_inputs(tmp_path):
    out = str(tmp_path)
    tasks = [(("train", i, 2), f"d{i}", ROWS[i:i + 1], False) for i in range(2)]
    with BeamTestPipeline() as p:
        path = {
            "tasks": p | "T" >> beam.Create(tasks),
            "counts": p | "C" >> beam.Create([("train", 2), ("val", 1)]),
            "failures": p | "F" >> beam.Create([Failure("z", "uz", "bad_row", "line 3")]),
            "rows_in": p | "R" >> beam.Create([3]),
        } | shard_plan.WritePlan(out)
        assert_that(path, equal_to([str(tmp_path / "_plan" / "plan.json")]))
    summary = shard_plan.read_summary(out)
    assert summary == {"build": ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"],
                       "counts": {"train": 2, "val": 1}, "failures": [["z", "uz", "bad_row", "line 3"]], "rows_in": 3}
    assert shard_plan.read_shard_plan(out, "train-00001-of-00002.tfrecord") == tasks[1]


def test_an_empty_input_plans_no_shard_and_reads_zero_rows(tmp_path):
    with BeamTestPipeline() as p:
        empty = p | beam.Create([])
        _ = {"tasks": empty, "counts": p | "C" >> beam.Create([]), "failures": p | "F" >> beam.Create([]),
             "rows_in": p | "R" >> beam.Create([])} | shard_plan.WritePlan(str(tmp_path))
    assert json.loads((tmp_path / "_plan" / "plan.json").read_text()) == {
        "build": [], "counts": {}, "failures": [], "rows_in": 0}


@pytest.mark.parametrize("partitioning, build_tasks", [((), 17), (("--dask_partition_size=4",), 5)])
def test_on_dask_the_build_has_one_task_per_shard_unless_partitioning_is_given(partitioning, build_tasks):
    pytest.importorskip("distributed", reason="apache-beam[dask] is not installed")
    cfg, beam_args = preprocess.parse_args(["--csv=a.csv", "--output_dir=/nowhere", "--runner=dask",
                                            "--dask_address=tcp://127.0.0.1:1", *partitioning])
    options = preprocess.pipeline_options(cfg, beam_args, csv_bytes=100)
    p = beam.Pipeline(options=options)
    preprocess.build(p, cfg, [f"train-{i:05d}-of-00017.tfrecord" for i in range(17)])
    tasks = dask_setup.bag_partitions(p, options)
    assert tasks["Build/Build"] == build_tasks
    assert list(tasks)[-1] == "Build/Build"  # the build is the job's last step: no shuffle after it
