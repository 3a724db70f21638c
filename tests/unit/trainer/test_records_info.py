"""Steps per epoch and the image size come from shard_index.json; without it they are read, said so."""

from __future__ import annotations

import json

from tests.unit.trainer.trainer_helpers import make_shards
from trainer.input import records_info
from trainer.config import Config


def test_train_records_come_from_the_index_without_reading(tmp_path, caplog):
    data = make_shards(tmp_path / "data", "--classes=3", "--per_class=5", "--size=40", "--shards=2")
    files = sorted(str(p) for p in data.glob("train-*"))
    assert records_info.train_records(str(data), files) == 15
    index = json.loads((data / "shard_index.json").read_text())
    for shard in index["splits"]["train"]["shards"].values():
        shard["records"] += 1000  # a number only the index can give
    (data / "shard_index.json").write_text(json.dumps(index))
    assert records_info.train_records(str(data), files) == 2015
    assert "counting by reading" not in caplog.text


def test_train_records_are_counted_by_reading_when_there_is_no_index(tmp_path, caplog):
    data = make_shards(tmp_path / "data", "--classes=3", "--per_class=5", "--size=40", "--shards=2",
                       "--layout=hashed")
    assert records_info.train_records(str(data), sorted(str(p) for p in data.glob("train-*"))) == 15
    assert "counting by reading every shard" in caplog.text


def test_image_size_defaults_to_the_stored_size_and_upsampling_is_warned(tmp_path, caplog):
    data = make_shards(tmp_path / "data", "--classes=3", "--per_class=3", "--size=40", "--shards=1")
    cfg = Config(data_dir=str(data), output_dir=str(tmp_path / "out"))
    assert cfg.image_size == 0 and records_info.resolve_image_size(cfg).image_size == 40
    assert records_info.resolve_image_size(Config(data_dir=str(data), output_dir="o", image_size=32)).image_size == 32
    assert "upsample" not in caplog.text
    assert records_info.resolve_image_size(Config(data_dir=str(data), output_dir="o", image_size=64)).image_size == 64
    assert "would upsample" in caplog.text
