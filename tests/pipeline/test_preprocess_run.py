"""Whole runs of `pipelines.preprocess`: injected HTTP faults, landmarks-mini, the unreachable GLD sample."""

from __future__ import annotations

import csv
import json

from pipelines import preprocess, schema
from tests.pipeline import helpers

FAST = ["--fetch_timeout=1", "--fetch_retries=1", "--backoff_s=0.01"]


def read_failures(out_dir):
    """({(id, reason)}, rows) of failures.csv."""
    with open(out_dir / "failures.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    named = [r["id"] for r in rows if r["id"]]  # a line with no readable id reports ""
    assert len(named) == len(set(named)), "an id reported twice"
    return {(r["id"], r["reason"]) for r in rows}, rows


def written_records(out_dir) -> dict:
    """{id: (split, ImageRecord)} over every final shard; fails on an id written twice."""
    records = {}
    for path in sorted(out_dir.glob("*.tfrecord")):
        assert schema.parse_shard_name(path.name), path.name
        for payload in schema.iter_frames(path.read_bytes()):
            r = schema.deserialize(payload)
            assert r.image_id not in records
            records[r.image_id] = (path.name.split("-")[0], r)
    return records


def test_faults_are_reported_with_their_reason_and_nothing_is_lost(tmp_path):
    with helpers.FaultServer(stall_s=3.0, image_size=(400, 300)) as srv:
        good = {f"g{i}": srv.url("img", f"g{i}") for i in range(5)}
        good.update(redir=srv.url("redirect", "r"), f500=srv.url("flaky500", "f"), f429=srv.url("flaky429", "q"))
        bad = {
            "n404": (srv.url("404", "a"), "http_404"),
            "n403": (srv.url("403", "b"), "http_403"),
            "n410": (srv.url("410", "c"), "http_410"),
            "e500": (srv.url("500", "d"), "http_5xx"),
            "slow": (srv.url("slow", "e"), "timeout"),
            "stall": (srv.url("stall", "s"), "timeout"),
            "trunc": (srv.url("truncated", "t"), "truncated"),
            "html": (srv.url("html", "h.jpg"), "not_an_image"),
            "local": ("images/missing.jpg", "not_found"),
        }
        lines = ["id,url,landmark_id"]
        lines += [f"{i},{u},{n}" for n, (i, u) in enumerate(sorted(good.items()))]
        lines += [f"{i},{u},1" for i, (u, _) in sorted(bad.items())]
        lines += [f"g0,{srv.url('404', 'dup')},9", "broken,row", '"q1","unclosed,3']
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
        out = tmp_path / "out"
        stats = preprocess.run([f"--csv={tmp_path / 'in.csv'}", f"--output_dir={out}", "--split=test", *FAST])
        hits = dict(srv.hits)
    records = written_records(out)
    assert set(records) == set(good)
    assert all(split == "test" for split, _ in records.values())
    assert records["g0"][1].landmark_id == sorted(good).index("g0")  # first occurrence kept
    assert records["g0"][1].source_url == good["g0"]
    assert all(min(r.height, r.width) == 256 for _, r in records.values())
    failures, rows = read_failures(out)
    expected = {(i, reason) for i, (_, reason) in bad.items()} | {("g0", "duplicate_id"), ("broken", "bad_row"), ("q1", "bad_row")}
    assert failures == expected and len(rows) == len(expected)
    assert stats["rows_in"] == len(lines) - 1 == stats["written"] + stats["failed"]
    assert stats["accounted_for"] is True
    assert json.loads((out / "stats.json").read_text()) == stats
    # 4xx are asked once; 5xx / 429 / timeouts are retried (--fetch_retries=1: two tries).
    assert hits["/404/a"] == hits["/403/b"] == hits["/410/c"] == 1
    assert hits["/500/d"] == hits["/flaky500/f"] == hits["/flaky429/q"] == hits["/slow/e"] == 2
    assert "/404/dup" not in hits  # the duplicate row is dropped before fetching


def test_landmarks_mini_is_written_whole(shared_dir, tmp_path):
    data = shared_dir / "data" / "landmarks-mini"
    stats = preprocess.run([f"--csv={data / 'train.csv'},{data / 'test.csv'}", f"--output_dir={tmp_path}"])
    assert (stats["rows_in"], stats["written"], stats["failed"]) == (536, 536, 0)
    assert stats["written_by_split"]["test"] == 261
    assert stats["written_by_split"]["train"] + stats["written_by_split"]["val"] == 275
    records = written_records(tmp_path)
    assert len(records) == 536
    assert all(min(r.height, r.width) <= 256 and r.jpeg[:2] == b"\xff\xd8" for _, r in records.values())
    with open(data / "train.csv", newline="") as f:
        labels = {r["id"]: int(r["landmark_id"]) for r in csv.DictReader(f)}
    assert {i: r.landmark_id for i, (s, r) in records.items() if s != "test"} == labels
    assert (tmp_path / "failures.csv").read_text() == "id,url,reason,detail\n"


def test_unreachable_gld_sample_is_all_accounted_for(shared_dir, tmp_path):
    path = shared_dir / "data" / "gld-csv-sample" / "test.csv"
    with open(path, newline="") as f:
        ids = {r["id"] for r in csv.DictReader(f)}
    stats = preprocess.run([f"--csv={path}", f"--output_dir={tmp_path}", "--fetch_threads=32", *FAST])
    failures, rows = read_failures(tmp_path)
    assert {i for i, _ in failures} == ids and len(rows) == len(ids) == stats["rows_in"]
    assert {reason for _, reason in failures} <= {"connection_error", "timeout"}
    assert stats["written"] == 0 and stats["accounted_for"] is True
