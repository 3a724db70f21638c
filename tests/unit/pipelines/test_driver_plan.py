"""The plan phase in the submitting process (pipelines/graph/driver_plan.py) writes the same plan
as the plan pipeline (`preprocess.plan`, on the DirectRunner), byte for byte: fresh, with a
finished shard to skip, and with `--retry_failed` on a shard holding a transient failure."""

from __future__ import annotations

import json
import pathlib
from typing import Dict

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import preprocess
from pipelines.graph import shard_plan, shards
from pipelines.sources.csv_input import Row


def _inputs(root: pathlib.Path) -> str:
    """Two CSVs: labelled rows (one landmark larger than a shard, small ones, bad rows, duplicate
    ids within and across files) and unlabelled rows (the test split, hashed)."""
    lines = ["id,url,landmark_id"]
    lines += [f"big{n:02d},http://h/big{n}.jpg,7" for n in range(30)]
    lines += [f"s{n:02d},http://h/s{n}.jpg,{100 + n % 9}" for n in range(40)]
    lines += ["s03,http://h/again.jpg,100", "bad1,,4", "bad2,http://h/x.jpg,notanumber", ",http://h/noid.jpg,1"]
    (root / "a.csv").write_text("\n".join(lines) + "\n")
    test = ["id,url"] + [f"t{n:02d},http://h/t{n}.jpg" for n in range(25)] + ["big05,http://h/dup.jpg"]
    (root / "b.csv").write_text("\n".join(test) + "\n")
    return f"{root / 'a.csv'},{root / 'b.csv'}"


def _plan_files(out: pathlib.Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / shard_plan.PLAN_DIR).iterdir()) if p.is_file()}


def _both(csvs: str, out: pathlib.Path, *extra: str):
    """(plan files of the pipeline, plan files of the driver, the driver's counters) for one output."""
    cfg, _ = preprocess.parse_args([f"--csv={csvs}", f"--output_dir={out}", "--rows_per_shard=12", *extra])
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner", "--allow_unsafe_triggers"])) as p:
        preprocess.plan(p, cfg)
    by_pipeline = _plan_files(out)
    shard_plan.remove(str(out))
    counters = preprocess.plan_in_driver(cfg)
    by_driver = _plan_files(out)
    shard_plan.remove(str(out))
    return by_pipeline, by_driver, counters


@pytest.mark.parametrize("retry", [False, True])
def test_the_driver_writes_the_plan_the_pipeline_writes(tmp_path, retry):
    csvs, out = _inputs(tmp_path), tmp_path / "out"
    out.mkdir()
    by_pipeline, by_driver, counters = _both(csvs, out)
    assert by_driver == by_pipeline
    summary = json.loads(by_driver[shard_plan.SUMMARY])
    assert set(summary["counts"]) == {"train", "val", "test"} and summary["rows_in"] == 100
    assert sorted(f[2] for f in summary["failures"]) == ["bad_row"] * 3 + ["duplicate_id"] * 2
    assert counters["rows_read"] == 100 and counters["failed_duplicate_id"] == 2
    assert len(summary["build"]) == sum(summary["counts"].values())  # nothing finished yet

    # One shard finished by an earlier run (its marker and file match): both plans leave it out;
    # with --retry_failed and a transient failure in its marker, both plan a `keep` task for that row.
    name = summary["build"][0]
    key_t, digest, rows, _ = _task(by_driver, name)
    failures = [(rows[0].image_id, rows[0].url, "timeout", "slow")] if retry else []
    shards.write_shard(str(out), shards.ShardKey(*key_t), [], failures, digest, 0)
    by_pipeline, by_driver, counters = _both(csvs, out, *(["--retry_failed"] if retry else []))
    assert by_driver == by_pipeline
    build = json.loads(by_driver[shard_plan.SUMMARY])["build"]
    if retry:
        assert name in build and counters["rows_retried"] == 1
    else:
        assert name not in build and len(build) == len(summary["build"]) - 1
        assert counters["shards_skipped"] == 1


def _task(files: Dict[str, bytes], name: str):
    """The build task in a plan file's bytes (as `shard_plan.read_shard_plan` reads it)."""
    doc = json.loads(files[name[: -len(".tfrecord")] + ".json"])
    rows = [Row(i, u, loc, label, split, tuple(order)) for i, u, loc, label, split, order in doc["rows"]]
    return tuple(doc["shard"]), doc["fingerprint"], rows, doc["keep"]
