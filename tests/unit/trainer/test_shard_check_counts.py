"""trainer/input/shard_check.py's count of what `--skip_corrupt_records` skips: exact when every frame
after the damage could be followed to the end of the shard, "at least" only when a broken frame
hides the rest (issue 25, LOW). Checked against what the skipping reader actually reads."""

from __future__ import annotations

import struct

import pytest

from tests.unit.trainer.trainer_helpers import make_shards
from trainer.input import shard_check


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """One train shard of 60 records (6 landmarks x 10)."""
    data = make_shards(tmp_path_factory.mktemp("one") / "data", "--classes=6", "--per_class=10", "--val_per_class=1",
                       "--size=32", "--shards=1")
    return next(data.glob("train-*"))


def frames(data: bytes):
    """(offset, payload length) of every record."""
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        out.append((offset, length))
        offset += 12 + length + 4
    return out


@pytest.mark.parametrize("where, lost, counted", [
    ("payload", 20, "20 record(s)"),  # records 40..59 all counted: exact
    ("footer", 20, "20 record(s)"),
    ("header_crc", 1, "at least 1 record(s)"),  # the framing is lost: a lower bound, said so
])
def test_records_lost_are_exact_when_the_rest_could_be_counted(shard, tmp_path, capsys, where, lost, counted):
    data = bytearray(shard.read_bytes())
    records = frames(bytes(data))
    assert len(records) == 60
    offset, length = records[40]
    at = {"payload": offset + 12 + 5, "footer": offset + 12 + length, "header_crc": offset + 8}[where]
    data[at:at + 4] = b"\xde\xad\xbe\xef"
    path = tmp_path / shard.name
    path.write_bytes(bytes(data))
    good, damage = shard_check.scan(str(path))
    assert (good, damage.records_before, damage.records_lost) == (40, 40, lost)
    assert f", {counted}, from there to the end" in damage.describe()
    assert sum(1 for _ in shard_check.reader(True)(str(path))) == 40  # what training gets: 60 - 20
    lines = []
    shard_check.scan_all([str(path)], log=lines.append)  # a logger gets the bare message (no "WARNING: WARNING:")
    assert lines[0].startswith("skipping the rest of a damaged shard: ")
    shard_check.scan_all([str(path)])  # printed: one WARNING prefix per line
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in printed] == ["WARNING", "WARNING"] and "WARNING: WARNING" not in printed[0]
    assert lines[-1] == f"1 damaged shard(s): 40 records readable, {'' if lost == 20 else 'at least '}{lost} skipped"
