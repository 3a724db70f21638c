"""Damaged TFRecord shards: name the file and byte, or skip what cannot be read, with a count.

tf.data reports a damaged shard as `DataLossError: corrupted record at 1265943`, naming no file
(its readers see only the interleaved stream), and `ignore_errors()` would skip silently. So:

* `locate` turns such an error into `CorruptShardError` ("FILE: corrupted record at byte N ...",
  one line through `pipelines/cli/cli_errors.py`) by checking the TFRecord framing and CRCs of the
  shards that reach that byte, in Python, on the error path only;
* with `--skip_corrupt_records`, `scan_all` checks every shard up front (one streaming read) and
  reports what will be skipped, and `reader(skip=True)` reads each shard up to its first damaged
  record (`ignore_errors` per file: the rest of that shard is skipped, the other shards go on).
  A damaged record breaks the framing for a reader, so the rest of its shard is what is lost.

Reads go through `tf.io.gfile` (local or gs://). Frame layout: `pipelines/schema.py`.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from typing import Callable, Optional, Sequence, Tuple

from pipelines.cli.cli_errors import InputError
from pipelines.schema import masked_crc

_HEADER = 12  # uint64 length + masked CRC32C of the length
_FOOTER = 4  # masked CRC32C of the payload
_TF_ERROR = re.compile(r"(corrupted|truncated) record at (\d+)")


@dataclasses.dataclass(frozen=True)
class Damage:
    """The first unreadable record of a shard, and what a reader stopping there loses."""

    path: str
    offset: int  # byte where the unreadable record starts (what TensorFlow reports)
    problem: str  # "corrupted record" (a CRC does not match) | "truncated record" (the file ends inside it)
    records_before: int  # readable records before it: what the shard still gives
    records_lost: int  # records from it to the end of the shard (a lower bound unless `exact`)
    bytes_lost: int  # bytes from it to the end of the shard
    exact: bool = False  # every frame after the damage was counted through to the end of the file

    def describe(self) -> str:
        counted = f"{self.records_lost}" if self.exact else f"at least {self.records_lost}"
        return (f"{self.path}: {self.problem} at byte {self.offset} (after {self.records_before} good records; "
                f"{self.bytes_lost} bytes, {counted} record(s), from there to the end)")


class CorruptShardError(InputError):
    """A shard the reader cannot read through; the message names the file and the byte."""

    def __init__(self, damage: Damage) -> None:
        super().__init__(f"{damage.describe()}; rerun with --skip_corrupt_records to skip the rest of that shard")
        self.damage = damage


@dataclasses.dataclass(frozen=True)
class ScanReport:
    """What `scan_all` found: readable records in all shards, and the damaged shards."""

    records: int
    damaged: Tuple[Damage, ...]

    def counts(self) -> dict:
        """The figures that go into history.json."""
        return {"corrupt_shards": len(self.damaged),
                "corrupt_records_skipped": sum(d.records_lost for d in self.damaged)}


def _read_exact(f, n: int) -> bytes:
    """Up to `n` bytes (fewer only at the end of the file)."""
    parts, left = [], n
    while left > 0:
        chunk = f.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def scan(path: str) -> Tuple[int, Optional[Damage]]:
    """(records readable from the start, the first damage or None), checking every length and
    payload CRC, reading the shard once as a stream."""
    import tensorflow as tf  # gfile: local or gs://

    size = tf.io.gfile.stat(path).length
    good, offset, damage_at, problem, lost = 0, 0, None, "", 0
    exact = True  # False once a broken frame hides how many records follow
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            header = _read_exact(f, _HEADER)
            if len(header) < _HEADER:
                problem = problem or "truncated record"
                damage_at = offset if damage_at is None else damage_at
                lost += 1
                break
            if header[8:] != masked_crc(header[:8]):  # the framing is lost from here on
                problem = problem or "corrupted record"
                damage_at = offset if damage_at is None else damage_at
                lost += 1
                exact = offset + _HEADER >= size  # nothing could follow a header that ends the file
                break
            (length,) = struct.unpack("<Q", header[:8])
            if damage_at is not None:  # past the damage: only count the frames that still read
                f.seek(offset + _HEADER + length + _FOOTER)
                lost += 1
                offset += _HEADER + length + _FOOTER
                if offset > size:
                    break  # that frame was cut short: counted, and nothing follows it
                continue
            body = _read_exact(f, length + _FOOTER)
            if len(body) < length + _FOOTER:
                problem, damage_at, lost = "truncated record", offset, 1
                break
            if body[length:] != masked_crc(body[:length]):
                problem, damage_at, lost = "corrupted record", offset, 1
            else:
                good += 1
            offset += _HEADER + length + _FOOTER
    if damage_at is None:
        return good, None
    return good, Damage(path, damage_at, problem, good, lost, size - damage_at, exact)


def _print_warning(line: str) -> None:
    print(f"WARNING: {line}", flush=True)


def scan_all(files: Sequence[str], log: Callable[[str], None] = _print_warning) -> ScanReport:
    """Scan every shard; log one warning per damaged one (what `--skip_corrupt_records` will skip).
    `log` gets the bare message: a logger such as `logging.warning` adds its own level prefix."""
    records, damaged = 0, []
    for path in files:
        good, damage = scan(path)
        records += good
        if damage is not None:
            damaged.append(damage)
            log(f"skipping the rest of a damaged shard: {damage.describe()}")
    if damaged:
        lost = sum(d.records_lost for d in damaged)
        bound = "" if all(d.exact for d in damaged) else "at least "
        log(f"{len(damaged)} damaged shard(s): {records} records readable, {bound}{lost} skipped")
    return ScanReport(records, tuple(damaged))


def locate(files: Sequence[str], error: Exception) -> Optional[CorruptShardError]:
    """The shard behind TensorFlow's `DataLossError` (which names no file), as a CorruptShardError;
    None when no shard of `files` is damaged (then the error came from elsewhere)."""
    import tensorflow as tf

    match = _TF_ERROR.search(str(error))
    offset = int(match.group(2)) if match else None
    first = None
    for path in files:
        if offset is not None and tf.io.gfile.stat(path).length < offset:
            continue  # the damage TensorFlow met lies past this file's end
        _, damage = scan(path)
        # TensorFlow names the record's start, or its payload's (12 bytes on) for a payload CRC.
        if damage is not None and (offset is None or offset in (damage.offset, damage.offset + _HEADER)):
            return CorruptShardError(damage)
        first = first or damage
    return CorruptShardError(first) if first else None


def reader(skip: bool) -> Callable:
    """path -> dataset of its serialized records; with `skip`, ending at the shard's first
    unreadable record instead of failing."""
    import tensorflow as tf

    if not skip:
        return tf.data.TFRecordDataset
    return lambda path: tf.data.TFRecordDataset(path).ignore_errors()
