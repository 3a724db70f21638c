"""A run killed midway resumes: the final output equals an uninterrupted run's, finished shards
are not redone, and no half-written shard is ever visible under its final name."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines import schema, shard_index
from pipelines.graph import shards
from tests.pipeline import helpers


def make_input(tmp_path) -> str:
    (tmp_path / "images").mkdir()
    lines = ["id,url,landmark_id"]
    for i in range(24):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(helpers.jpeg(300, 200, seed=str(i)))
        lines.append(f"img{i:02d},images/{i}.jpg,{i % 4}")
    lines += ["lost1,images/none1.jpg,1", "lost2,images/none2.jpg,2", "img03,images/3.jpg,9"]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "in.csv")


def run(csv_path: str, out, crash_after=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(shards.CRASH_ENV, None)
    if crash_after is not None:
        env[shards.CRASH_ENV] = str(crash_after)
    cmd = [sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={out}",
           "--num_shards=4", "--val_fraction=0.25", "--image_size=64", "--direct_running_mode=in_memory"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def snapshot(out) -> dict:
    """Every file's content; shards as their decoded records (protobuf map order may differ
    between processes unless serialized deterministically, so bytes alone would be too strict)."""
    files = {}
    for root, _, names in os.walk(out):
        for n in names:
            p = os.path.join(root, n)
            data = open(p, "rb").read()
            if n.endswith(schema.SHARD_SUFFIX):
                data = [schema.deserialize(x) for x in schema.iter_frames(data)]
            files[os.path.relpath(p, out)] = data
    return files


def test_crash_then_resume_equals_uninterrupted_run(tmp_path):
    csv_path = make_input(tmp_path)
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    assert run(csv_path, clean).returncode == 0

    crashed = run(csv_path, resumed, crash_after=3)
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    finished = sorted(p.name for p in resumed.glob("*.tfrecord"))
    markers = sorted(p.name.replace(".json", ".tfrecord") for p in (resumed / "_parts").glob("*.json"))
    assert finished == markers and len(finished) == 3  # every visible shard is complete
    assert len(list((resumed / "_tmp").iterdir())) == 1  # the interrupted one stayed a temp file
    assert not (resumed / "failures.csv").exists()
    before = {n: (os.stat(resumed / n).st_ino, os.stat(resumed / n).st_mtime_ns) for n in finished}

    again = run(csv_path, resumed)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "3 already done" in again.stdout
    assert {n: (os.stat(resumed / n).st_ino, os.stat(resumed / n).st_mtime_ns) for n in finished} == before
    assert snapshot(resumed) == snapshot(clean)
    assert b"lost1" in snapshot(clean)["failures.csv"] and b"duplicate_id" in snapshot(clean)["failures.csv"]
    check_whole_landmarks_and_index(snapshot(clean))


def check_whole_landmarks_and_index(files: dict) -> None:
    """Each train/val landmark sits in one shard or consecutive ones, as shard_index.json records."""
    index = shard_index.parse(files[shard_index.FILE])
    assert index.image_size == 64
    for split in ("train", "val"):
        where = {}
        for name, records in files.items():
            if name.startswith(split + "-"):
                labels = [r.landmark_id for r in records]
                assert index.splits[split].shards[name][0] == len(records)
                assert index.splits[split].shards[name][2] == {lb: labels.count(lb) for lb in set(labels)}
                for lb in labels:
                    where.setdefault(lb, set()).add(schema.parse_shard_name(name)[1])
        assert index.splits[split].layout == shard_index.WHOLE_LANDMARKS and where
        for shard_set in where.values():
            assert sorted(shard_set) == list(range(min(shard_set), max(shard_set) + 1))


def test_changed_settings_redo_the_shards(tmp_path):
    csv_path = make_input(tmp_path)
    out = tmp_path / "out"
    assert run(csv_path, out).returncode == 0
    cmd_64 = snapshot(out)
    env = dict(os.environ)
    env.pop(shards.CRASH_ENV, None)
    redo = subprocess.run(
        [sys.executable, "-m", "pipelines.preprocess", f"--csv={csv_path}", f"--output_dir={out}", "--num_shards=2",
         "--val_fraction=0.25", "--image_size=32", "--direct_running_mode=in_memory"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert redo.returncode == 0, redo.stderr[-2000:]
    now = snapshot(out)
    assert sorted(n for n in now if n.endswith(".tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord",
    ]  # the 4-shard plan's files are gone
    assert now["stats.json"] != cmd_64["stats.json"]
