"""Shard assignment is stable across processes; the writer is atomic and its marker resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines import schema
from pipelines.graph import shards


def test_stable_hash_is_the_same_in_another_process_with_another_hash_seed():
    ids = [f"id{i}" for i in range(50)]
    here = [shards.shard_index(i, 7) for i in ids]
    code = "import sys; from pipelines.graph import shards; print([shards.shard_index(f'id{i}', 7) for i in range(50)])"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(here)
    assert len(set(here)) == 7  # spreads over every shard


def test_shard_count():
    assert shards.shard_count(10, 4, 2000) == 4
    assert shards.shard_count(3, 100_000, 2000) == 3  # capped at the rows: never empty shards by the thousand
    assert shards.shard_count(0, 5, 2000) == 1
    assert shards.shard_count(0, 0, 2000) == 1
    assert shards.shard_count(4001, 0, 2000) == 3


def test_fingerprint_depends_on_rows_and_settings_not_order():
    rows = [("a", "u1", 1), ("b", "u2", 2)]
    assert shards.fingerprint("s", rows) == shards.fingerprint("s", reversed(rows))
    assert shards.fingerprint("s", rows) != shards.fingerprint("t", rows)
    assert shards.fingerprint("s", rows) != shards.fingerprint("s", rows[:1])


def test_write_shard_sorted_atomic_with_marker(tmp_path):
    key = shards.ShardKey("train", 1, 3)
    recs = [
        shards.Written(i, schema.serialize(schema.ImageRecord(i, b"jpeg" + i.encode(), 2, 3, 5, "u")), 5)
        for i in ("c", "a", "b")
    ]
    marker = shards.write_shard(str(tmp_path), key, recs, [("z", "uz", "http_404", "HTTP 404")], "digest", 99)
    path = tmp_path / "train-00001-of-00003.tfrecord"
    ids = [schema.deserialize(p).image_id for p in schema.iter_frames(path.read_bytes())]
    assert ids == ["a", "b", "c"]
    on_disk = json.loads((tmp_path / "_parts" / "train-00001-of-00003.json").read_text())
    assert on_disk == marker
    assert marker["records"] == 3 and marker["labels"] == {"5": 3} and marker["source_bytes"] == 99
    assert marker["failures"] == [["z", "uz", "http_404", "HTTP 404"]]
    assert list((tmp_path / "_tmp").iterdir()) == []  # the temporary file was renamed away
    assert shards.is_complete(str(tmp_path), key, "digest")
    assert not shards.is_complete(str(tmp_path), key, "other")
    path.write_bytes(path.read_bytes()[:-1])  # a damaged shard is redone
    assert not shards.is_complete(str(tmp_path), key, "digest")
    assert not shards.is_complete(str(tmp_path), shards.ShardKey("train", 0, 3), "digest")


def _loads(plan: shards.SplitPlan) -> list:
    load = [0] * plan.count
    for parts in plan.pieces.values():
        for shard, n in parts:
            load[shard] += n
    return load


def test_plan_landmarks_whole_balanced_and_deterministic_on_a_long_tail():
    rng = __import__("random").Random(7)
    sizes = {label: max(1, int(2000 / (rank + 1))) for rank, label in enumerate(rng.sample(range(10**6), 400))}
    plan = shards.plan_landmarks(sizes, 0, 500)
    total = sum(sizes.values())
    assert plan.count == -(-total // 500)
    capacity = -(-total // plan.count)
    for label, parts in plan.pieces.items():
        assert sum(n for _, n in parts) == sizes[label]
        if sizes[label] <= capacity:
            assert len(parts) == 1  # a landmark that fits a shard is never cut
        else:  # a larger one spans consecutive shards, as few as its size allows
            assert [s for s, _ in parts] == list(range(parts[0][0], parts[0][0] + len(parts)))
            assert len(parts) <= sizes[label] // capacity + 2
    load = _loads(plan)
    assert max(load) - min(load) <= 0.02 * capacity, load  # the tail's small landmarks even the shards out
    # Same sizes in another order (as another run would group them): the same plan.
    assert shards.plan_landmarks(dict(reversed(list(sizes.items()))), 0, 500) == plan


def test_plan_landmarks_with_a_fixed_shard_count_and_one_huge_landmark():
    plan = shards.plan_landmarks({1: 50, 2: 3, 3: 3, 4: 2}, 4, 2000)
    assert plan.count == 4 and plan.pieces[1] == [(0, 15), (1, 15), (2, 15), (3, 5)]
    assert _loads(plan) == [15, 15, 15, 13]


def test_place_rows_cuts_a_landmark_by_sorted_id():
    assert shards.place_rows(["c", "a", "b"], [(2, 2), (3, 1)]) == [("a", 2), ("b", 2), ("c", 3)]
    with pytest.raises(ValueError, match="plan holds 2 rows"):
        shards.place_rows(["a", "b", "c"], [(0, 2)])
