"""`shard_index.json`: what each shard holds, so the trainer can plan without reading images.

Written by the preprocessing (`pipelines.graph.report.finalize`, atomically, beside stats.json) and read
by the trainer (`trainer.input.records_info`) and the indexer: one module owns the keys, so writer and
readers cannot drift. Pure JSON: importable with or without TensorFlow.

    {"version": 1,
     "image_size": 256,                 # shorter side the images were stored at (--image_size)
     "splits": {"train": {"layout": "whole_landmarks",   # or "hashed" (test)
                          "records": 1180000,
                          "shards": {"train-00000-of-00590.tfrecord": {"records": 2000, "bytes": 71000000,
                                                                        "labels": {"17": 40, ...}}}}}}

`labels` maps a landmark id (as a string, JSON keys are strings) to its records in that shard.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, Iterable, Mapping, Tuple

FILE = "shard_index.json"
VERSION = 1
WHOLE_LANDMARKS = "whole_landmarks"  # each landmark in one shard, or in consecutive shards
HASHED = "hashed"  # rows spread by a hash of the image id (a landmark's photos are everywhere)

# Keys.
K_VERSION = "version"
K_IMAGE_SIZE = "image_size"
K_SPLITS = "splits"
K_LAYOUT = "layout"
K_RECORDS = "records"
K_SHARDS = "shards"
K_LABELS = "labels"
K_BYTES = "bytes"


@dataclasses.dataclass(frozen=True)
class SplitIndex:
    """One split: its layout, and per shard file name its (records, bytes, {label: records})."""

    layout: str
    shards: Dict[str, Tuple[int, int, Dict[int, int]]]

    @property
    def records(self) -> int:
        return sum(n for n, _, _ in self.shards.values())

    def label_totals(self) -> Dict[int, int]:
        """Records per landmark over the whole split."""
        totals: Dict[int, int] = {}
        for _, _, labels in self.shards.values():
            for label, n in labels.items():
                totals[label] = totals.get(label, 0) + n
        return totals


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    image_size: int
    splits: Dict[str, SplitIndex]


def build(image_size: int, shards: Iterable[Tuple[str, str, str, int, int, Mapping[str, int]]]) -> bytes:
    """The file's bytes from (split, layout, shard file name, records, bytes, {label: count}) per shard."""
    splits: Dict[str, dict] = {}
    for split, layout, name, records, nbytes, labels in sorted(shards, key=lambda s: s[2]):
        entry = splits.setdefault(split, {K_LAYOUT: layout, K_RECORDS: 0, K_SHARDS: {}})
        entry[K_RECORDS] += records
        ordered = sorted(labels.items(), key=lambda kv: int(kv[0]))
        entry[K_SHARDS][name] = {K_RECORDS: records, K_BYTES: nbytes, K_LABELS: {str(k): int(v) for k, v in ordered}}
    doc = {K_VERSION: VERSION, K_IMAGE_SIZE: int(image_size), K_SPLITS: splits}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8")


def parse(data: bytes) -> ShardIndex:
    """The file's content; ValueError (saying what is wrong) for anything this code cannot read."""
    try:
        doc = json.loads(data)
        if doc.get(K_VERSION) != VERSION:
            raise ValueError(f"version {doc.get(K_VERSION)!r}, this code reads {VERSION}")
        splits = {
            split: SplitIndex(entry[K_LAYOUT], {
                name: (int(shard[K_RECORDS]), int(shard[K_BYTES]),
                       {int(k): int(v) for k, v in shard[K_LABELS].items()})
                for name, shard in entry[K_SHARDS].items()
            })
            for split, entry in doc[K_SPLITS].items()
        }
        return ShardIndex(int(doc[K_IMAGE_SIZE]), splits)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{FILE}: missing or malformed key {e}") from e
