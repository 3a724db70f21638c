"""Each composite transform on literal rows, with TestPipeline + assert_that."""

from __future__ import annotations

import contextlib
import json
import threading

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import schema
from pipelines.graph import report, shards
from pipelines.images import image
from pipelines.sources import fetch
from pipelines.sources.csv_input import Failure, Row
from pipelines.graph.transforms import BuildShards, DedupById, PlanShards, ReadCsvRows
from tests.pipeline import helpers


def row(image_id: str, url: str = "", label: int = 1, split: str = "train", order=(0, 1)) -> Row:
    return Row(image_id, url or f"{image_id}.jpg", url or f"/nowhere/{image_id}.jpg", label, split, order)


def test_read_csv_rows(tmp_path):
    (tmp_path / "a.csv").write_text('"id","url","landmark_id"\n"a","x/a.jpg",1\n"b","x/b.jpg"\n')
    (tmp_path / "b.csv").write_text("id,url\nc,http://h/c.jpg\n")
    with BeamTestPipeline() as p:
        out = p | ReadCsvRows([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "auto", 0.0)
        assert_that(
            out.rows | beam.Map(lambda r: (r.image_id, r.location, r.split, r.order)),
            equal_to([("a", str(tmp_path / "x" / "a.jpg"), "train", (0, 2)), ("c", "http://h/c.jpg", "test", (1, 2))]),
            label="rows",
        )
        assert_that(out.failures | beam.Map(lambda f: (f.image_id, f.reason)), equal_to([("b", "bad_row")]), label="bad")


def test_dedup_keeps_first_by_input_order():
    rows = [row("a", "u-late", order=(1, 5)), row("a", "u-first", order=(0, 9)), row("b"), row("a", "u-mid", order=(1, 2))]
    with BeamTestPipeline() as p:
        out = p | beam.Create(rows) | DedupById()
        assert_that(out.rows | beam.Map(lambda r: (r.image_id, r.url)), equal_to([("a", "u-first"), ("b", "b.jpg")]), label="kept")
        assert_that(
            out.failures | beam.Map(lambda f: (f.image_id, f.url, f.reason)),
            equal_to([("a", "u-late", "duplicate_id"), ("a", "u-mid", "duplicate_id")]),
            label="dups",
        )


def test_plan_shards_keeps_landmarks_whole_covers_every_index_and_skips_finished(tmp_path):
    # 17 train rows in 3 shards (capacity 6): landmark 4 (7 rows) is larger than a shard, so it
    # spans shards 0-1 (its first 6 ids by sort order, then the last); the others go whole, largest
    # first, to the shard with the most room: 1 (5 rows) -> shard 2, 2 (3) -> 1, 3 (2) -> 1.
    sizes = {4: 7, 1: 5, 2: 3, 3: 2}
    rows = [row(f"l{label}-{i}", label=label) for label, n in sizes.items() for i in range(n)]
    rows += [row("v0", split="val"), row("x0", label=-1, split="test"), row("x1", label=-1, split="test")]
    expected_train = {
        0: [f"l4-{i}" for i in range(6)],
        1: ["l4-6"] + [f"l2-{i}" for i in range(3)] + [f"l3-{i}" for i in range(2)],
        2: [f"l1-{i}" for i in range(5)],
    }
    # Pretend an earlier run finished train shard 0 on the same rows and settings.
    done = shards.ShardKey("train", 0, 3)
    digest = shards.fingerprint("S", [(i, f"{i}.jpg", 4) for i in expected_train[0]])
    shards.write_shard(str(tmp_path), done, [], [], digest)
    test_shard = {i: shards.shard_index(i, 2) for i in ("x0", "x1")}  # --num_shards is capped at a split's rows
    with BeamTestPipeline() as p:
        plan = p | beam.Create(rows) | PlanShards(str(tmp_path), "S", num_shards=3)
        assert_that(
            plan["tasks"] | beam.Map(lambda t: (t[0], [r.image_id for r in t[2]])),
            equal_to(
                [(("train", i, 3), sorted(expected_train[i])) for i in (1, 2)]
                + [(("val", 0, 1), ["v0"])]
                + [(("test", i, 2), sorted(x for x, s in test_shard.items() if s == i)) for i in range(2)]
            ),
            label="tasks",
        )
        assert_that(plan["skipped"], equal_to([done.name]), label="skipped")
        assert_that(plan["counts"], equal_to([("train", 3), ("val", 1), ("test", 2)]), label="counts")


def test_build_shards_writes_good_rows_and_reports_bad_ones(tmp_path):
    (tmp_path / "good.jpg").write_bytes(helpers.jpeg(600, 400, seed="g"))
    (tmp_path / "page.jpg").write_bytes(b"<html>oops</html>")
    rows = [
        row("good", str(tmp_path / "good.jpg"), label=4),
        row("html", str(tmp_path / "page.jpg")),
        row("gone", str(tmp_path / "gone.jpg")),
    ]
    out_dir = tmp_path / "out"
    task = (("train", 0, 1), "D", rows)
    with BeamTestPipeline() as p:
        written = p | beam.Create([task]) | BuildShards(
            str(out_dir), fetch.FetchConfig(retries=0), image.ImageConfig(image_size=100), threads=2
        )
        assert_that(written, equal_to(["train-00000-of-00001.tfrecord"]))
    records = [schema.deserialize(x) for x in schema.iter_frames((out_dir / "train-00000-of-00001.tfrecord").read_bytes())]
    assert [(r.image_id, r.height, r.width, r.landmark_id) for r in records] == [("good", 100, 150, 4)]
    marker = json.loads((out_dir / "_parts" / "train-00000-of-00001.json").read_text())
    assert sorted((f[0], f[2]) for f in marker["failures"]) == [("gone", "not_found"), ("html", "not_an_image")]
    assert marker["fingerprint"] == "D"


def test_report_merges_markers_and_input_failures(tmp_path):
    rec = schema.serialize(schema.ImageRecord("k", b"j", 1, 1, 3, "u"))
    shards.write_shard(str(tmp_path), shards.ShardKey("test", 0, 1), [shards.Written("k", rec, 3)], [("m", "um", "timeout", "slow")], "d")
    (tmp_path / "test-00000-of-00002.tfrecord").write_bytes(b"stale plan")
    stats = report.finalize(str(tmp_path), {"test": 1}, [Failure("d", "ud", "duplicate_id", "")], 3, {"image_size": 1})
    assert (stats["written"], stats["failed"], stats["accounted_for"]) == (1, 2, True)
    assert (tmp_path / "failures.csv").read_text() == "id,url,reason,detail\nd,ud,duplicate_id,\nm,um,timeout,slow\n"
    saved = json.loads((tmp_path / report.STATS_JSON).read_text())
    assert saved["failed_by_reason"] == {"duplicate_id": 1, "timeout": 1}
    assert saved["images_per_landmark"] == {"3": 1}
    assert not (tmp_path / "test-00000-of-00002.tfrecord").exists()


def test_build_setup_freezes_what_lives_as_long_as_the_worker():
    import gc

    from pipelines.graph.transforms import _Build

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    dofn = _Build("/nowhere", fetch.FetchConfig(), image.ImageConfig(), threads=2)
    try:
        dofn.setup()
        assert gc.get_freeze_count() > 0  # the worker's long-lived objects are out of the collector's way
    finally:
        dofn.teardown()
        gc.unfreeze()


def _ok_row(r, fetch_cfg, image_cfg):
    """`process_row` for a row that always succeeds (a one-byte record)."""
    return ("ok", shards.Written(r.image_id, b"x", r.landmark_id), 1)


@contextlib.contextmanager
def _bundle(monkeypatch, process_row, write_shard):
    """A set-up `_Build` DoFn inside a started bundle, with `process_row` and `write_shard`
    replaced; torn down on the way out (`finish_bundle` is the test's to call)."""
    from pipelines.graph import transforms

    monkeypatch.setattr(transforms, "process_row", process_row)
    monkeypatch.setattr(transforms.shards, "write_shard", write_shard)
    dofn = transforms._Build("/nowhere", fetch.FetchConfig(), image.ImageConfig(), threads=2)
    dofn.setup()
    try:
        dofn.start_bundle()
        yield dofn
    finally:
        dofn.teardown()


def test_build_writes_a_shard_while_the_next_one_is_built(monkeypatch):
    """The first shard's write can only finish once the second shard's rows are being processed:
    a write done in line (before the next element is taken) would wait out its timeout and fail."""
    second_started, written = threading.Event(), []

    def process_row(r, fetch_cfg, image_cfg):
        if r.image_id.startswith("b"):
            second_started.set()
        return _ok_row(r, fetch_cfg, image_cfg)

    def write_shard(output_dir, key, records, failures, digest, source_bytes=0):
        if key.index == 0 and not second_started.wait(timeout=10):
            raise AssertionError("shard 0 was written before shard 1 was started")
        written.append((key.name, [r.image_id for r in records], threading.current_thread().name))
        return {"records": len(records), "failures": list(failures)}

    with _bundle(monkeypatch, process_row, write_shard) as dofn:
        names = list(dofn.process((("train", 0, 2), "d0", [row("a1"), row("a2")])))
        names += list(dofn.process((("train", 1, 2), "d1", [row("b1")])))
        dofn.finish_bundle()  # waits for shard 1's write
    assert names == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert [(name, ids) for name, ids, _ in written] == [
        ("train-00000-of-00002.tfrecord", ["a1", "a2"]),
        ("train-00001-of-00002.tfrecord", ["b1"]),
    ]
    assert all(thread.startswith("shard-writer") for _, _, thread in written)


def test_build_bundle_fails_when_its_last_write_fails(monkeypatch):
    """A write error in the writer thread is raised by `finish_bundle`: the bundle fails rather
    than commit a shard name whose file is not there."""

    def write_shard(*args, **kwargs):
        raise OSError("disk full")

    with _bundle(monkeypatch, _ok_row, write_shard) as dofn:
        assert list(dofn.process((("train", 0, 1), "d0", [row("a1")]))) == ["train-00000-of-00001.tfrecord"]
        with pytest.raises(OSError, match="disk full"):
            dofn.finish_bundle()
