"""The preprocessing on Beam's DaskRunner, on a real local Dask cluster (scheduler + 2 worker
processes), gives exactly the DirectRunner's output: the same shard bytes, markers,
failures.csv and stats.json, for a fresh run and for a resumed one.

The first test spells the runner as Beam does (`--runner=<class path> --dask_client_address`),
as a user would without this project's `--runner=dask` shortcut."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from pipelines import preprocess
from pipelines.graph.dask_setup import DASK_RUNNER
from tests.pipeline import helpers

pytest.importorskip("distributed", reason="apache-beam[dask] is not installed")

FLAGS = ["--num_shards=3", "--val_fraction=0.25", "--image_size=32", "--fetch_retries=0"]


def make_input(root: pathlib.Path) -> str:
    """30 tiny images over 5 landmarks, plus every kind of input loss: a malformed row, a
    duplicate id, a missing file, an HTML page and a truncated JPEG named .jpg."""
    (root / "images").mkdir(parents=True)
    lines = ["id,url,landmark_id"]
    for i in range(30):
        (root / "images" / f"{i}.jpg").write_bytes(helpers.jpeg(72, 48, seed=str(i)))
        lines.append(f"img{i:02d},images/{i}.jpg,{i % 5}")
    (root / "images" / "page.jpg").write_bytes(b"<html>moved</html>")
    (root / "images" / "cut.jpg").write_bytes(helpers.jpeg(300, 200, seed="cut")[:900])
    lines += [
        "bad,images/0.jpg,notanumber",
        "img07,images/8.jpg,3",
        "gone,images/none.jpg,1",
        "page,images/page.jpg,2",
        "cut,images/cut.jpg,4",
    ]
    (root / "in.csv").write_text("\n".join(lines) + "\n")
    return str(root / "in.csv")


def outputs(out: pathlib.Path) -> dict:
    """Every output file's bytes by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def run(csv_path: str, out: pathlib.Path, *runner_flags: str) -> dict:
    return preprocess.run([f"--csv={csv_path}", f"--output_dir={out}", *FLAGS, *runner_flags])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(csv path, DirectRunner output folder, its stats): the expected result, made once."""
    root = tmp_path_factory.mktemp("dask-reference")
    csv_path = make_input(root)
    stats = run(csv_path, root / "direct", "--direct_running_mode=in_memory")
    return csv_path, root / "direct", stats


def test_direct_reference_reports_every_loss(reference):
    _, _, stats = reference
    assert stats["rows_in"] == 35 and stats["written"] == 30 and stats["accounted_for"]
    assert stats["failed_by_reason"] == {
        "bad_row": 1, "duplicate_id": 1, "not_an_image": 1, "not_found": 1, "truncated": 1
    }


def test_dask_output_equals_direct_runner(tmp_path, reference, dask_address):
    csv_path, direct_out, direct_stats = reference
    stats = run(csv_path, tmp_path, f"--runner={DASK_RUNNER}", f"--dask_client_address={dask_address}")

    assert stats == direct_stats
    # shards, markers, failures.csv, stats.json: byte for byte
    assert outputs(tmp_path) == outputs(direct_out)


def test_dask_resumes_like_the_direct_runner(tmp_path, reference, dask_address):
    """An output missing one finished shard (as after a crash): a Dask rerun redoes only that
    shard and ends byte-identical to an uninterrupted DirectRunner run."""
    csv_path, direct_out, _ = reference
    out = tmp_path / "out"
    shutil.copytree(direct_out, out)
    (out / "train-00001-of-00003.tfrecord").unlink()
    (out / "_parts" / "train-00001-of-00003.json").unlink()
    (out / "stats.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}

    stats = run(csv_path, out, "--runner=dask", f"--dask_address={dask_address}")

    assert stats["accounted_for"] and stats["written"] == 30
    assert outputs(out) == outputs(direct_out)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord") if p.name in kept} == kept  # not redone
