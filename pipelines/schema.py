"""The one TFRecord contract of the project: every writer and reader imports it.

A record is one image, stored as a `tf.train.Example` with the features in `FEATURES`.
The Beam preprocessing writes records without TensorFlow (through the `tfrecord` package's
protos); the trainer and indexer read them with `tf.data` through `tf_feature_spec()`.
The two libraries cannot be imported in one process (their protos collide), so each side's
import happens lazily inside the function that needs it.

Shards are named `{split}-{index:05d}-of-{count:05d}.tfrecord`; readers glob `shard_pattern()`,
and a writer only ever renames a complete file to such a name.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from typing import Dict, Iterator, Optional, Tuple

# Feature keys.
ID = "image/id"
ENCODED = "image/encoded"
HEIGHT = "image/height"
WIDTH = "image/width"
LANDMARK_ID = "image/landmark_id"
SOURCE_URL = "image/source_url"

# key -> (tfrecord-package dtype, TF dtype name). Every feature is a scalar.
FEATURES: Dict[str, Tuple[str, str]] = {
    ID: ("byte", "string"),
    ENCODED: ("byte", "string"),
    HEIGHT: ("int", "int64"),
    WIDTH: ("int", "int64"),
    LANDMARK_ID: ("int", "int64"),
    SOURCE_URL: ("byte", "string"),
}

# Landmark id of an image whose landmark is unknown (test images) or that shows none.
NO_LANDMARK = -1

SPLITS = ("train", "val", "test")
SHARD_SUFFIX = ".tfrecord"
_SHARD_RE = re.compile(r"^(train|val|test)-(\d{5})-of-(\d{5})\.tfrecord$")


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One decoded-and-resized image as stored in a shard."""

    image_id: str
    jpeg: bytes
    height: int
    width: int
    landmark_id: int = NO_LANDMARK
    source_url: str = ""


def shard_name(split: str, index: int, count: int) -> str:
    """File name of shard `index` of `count` of a split (no directory)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} out of range for {count} shards")
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def parse_shard_name(name: str) -> Optional[Tuple[str, int, int]]:
    """(split, index, count) for a final shard file name, None for anything else."""
    m = _SHARD_RE.match(name.rsplit("/", 1)[-1])
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def shard_pattern(directory: str, split: str) -> str:
    """Glob matching the final shards of one split (never temporary files)."""
    return f"{directory.rstrip('/')}/{split}-?????-of-?????{SHARD_SUFFIX}"


# --- TF-free side (Beam workers) -------------------------------------------------------------


def serialize(record: ImageRecord) -> bytes:
    """Serialized `tf.train.Example` of a record, built without TensorFlow."""
    from tfrecord import example_pb2  # lazy: must never share a process with TensorFlow

    values = {
        ID: record.image_id.encode("utf-8"),
        ENCODED: record.jpeg,
        HEIGHT: int(record.height),
        WIDTH: int(record.width),
        LANDMARK_ID: int(record.landmark_id),
        SOURCE_URL: record.source_url.encode("utf-8"),
    }
    example = example_pb2.Example()
    for key, (kind, _) in FEATURES.items():
        feature = example.features.feature[key]
        if kind == "byte":
            feature.bytes_list.value.append(values[key])
        else:
            feature.int64_list.value.append(values[key])
    return example.SerializeToString(deterministic=True)  # byte-identical reruns


def deserialize(data: bytes) -> ImageRecord:
    """Inverse of `serialize`, without TensorFlow (used by tests and TF-free tools)."""
    from tfrecord import example_pb2

    example = example_pb2.Example()
    example.ParseFromString(data)
    feats = example.features.feature

    def get(key: str):
        kind, _ = FEATURES[key]
        f = feats[key]
        return f.bytes_list.value[0] if kind == "byte" else f.int64_list.value[0]

    return ImageRecord(
        image_id=get(ID).decode("utf-8"),
        jpeg=bytes(get(ENCODED)),
        height=int(get(HEIGHT)),
        width=int(get(WIDTH)),
        landmark_id=int(get(LANDMARK_ID)),
        source_url=get(SOURCE_URL).decode("utf-8"),
    )


def masked_crc(data: bytes) -> bytes:
    import google_crc32c  # ships with google-cloud-storage; a C implementation

    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(payload: bytes) -> bytes:
    """One TFRecord frame: length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + masked_crc(length) + payload + masked_crc(payload)


def iter_frames(data: bytes) -> Iterator[bytes]:
    """Payloads of a whole TFRecord file's bytes, checking every CRC (raises ValueError)."""
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated TFRecord header at byte {pos}")
        length_bytes = data[pos : pos + 8]
        if data[pos + 8 : pos + 12] != masked_crc(length_bytes):
            raise ValueError(f"corrupt TFRecord length CRC at byte {pos}")
        (length,) = struct.unpack("<Q", length_bytes)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            raise ValueError(f"truncated TFRecord payload at byte {pos}")
        payload = data[start:end]
        if data[end : end + 4] != masked_crc(payload):
            raise ValueError(f"corrupt TFRecord payload CRC at byte {pos}")
        yield payload
        pos = end + 4


# --- TensorFlow side (trainer, indexer) ------------------------------------------------------


def tf_feature_spec():
    """`tf.io.parse_example` spec for the features above."""
    import tensorflow as tf  # lazy: must never share a process with the `tfrecord` package

    return {
        key: tf.io.FixedLenFeature([], getattr(tf, tf_dtype), default_value=None)
        for key, (_, tf_dtype) in FEATURES.items()
    }


def tf_parse(serialized):
    """Parse a batch (or scalar) of serialized examples into a dict of tensors keyed as above."""
    import tensorflow as tf

    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, tf_feature_spec())
    return tf.io.parse_example(serialized, tf_feature_spec())


def tf_serialize(record: ImageRecord) -> bytes:
    """`serialize` for a process that has TensorFlow (and so cannot import `tfrecord`): the same
    `tf.train.Example`, byte for byte."""
    import tensorflow as tf

    values = {ID: record.image_id.encode("utf-8"), ENCODED: record.jpeg, HEIGHT: int(record.height),
              WIDTH: int(record.width), LANDMARK_ID: int(record.landmark_id),
              SOURCE_URL: record.source_url.encode("utf-8")}
    feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[values[key]])) if kind == "byte"
               else tf.train.Feature(int64_list=tf.train.Int64List(value=[values[key]]))
               for key, (kind, _) in FEATURES.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)
