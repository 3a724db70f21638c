"""Rows of Kaggle GLD CSVs (`id,url,landmark_id` or `id,url`, quoted or not, local or gs://).

Each physical line is parsed on its own, so one malformed line (wrong arity, an unbalanced quote,
an empty id, a non-integer landmark_id) is one `bad_row` failure and never swallows the lines
after it; GLD CSVs have no newlines inside fields. Relative urls are resolved against the CSV's
folder, which is how `landmarks-mini` is laid out. The split is decided here, per row:
`--split=auto` sends a CSV without a landmark_id column to `test` and other rows to train/val by
a stable hash of the id; `--split=train` requires labels; `--split=test` keeps labels if present.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Iterator, NamedTuple, Optional, Tuple, Union

from pipelines import fetch, schema, storage
from pipelines.cli_errors import InputError
from pipelines.shards import stable_fraction

SPLIT_MODES = ("auto", "train", "test")


class Row(NamedTuple):
    """One valid input row. `order` = (csv index, line number): the first occurrence of an id wins."""

    image_id: str
    url: str  # as written in the CSV (reported in failures.csv and stored as the source url)
    location: str  # where to fetch it (relative paths resolved against the CSV's folder)
    landmark_id: int
    split: str
    order: Tuple[int, int]


class Failure(NamedTuple):
    """One input row that is not written; `reason` is one of `pipelines.errors.REASONS`."""

    image_id: str
    url: str
    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Header:
    """Column positions of a CSV; `label` is None when it has no landmark_id column."""

    id: int
    url: int
    label: Optional[int]
    width: int


class CsvHeaderError(InputError, ValueError):
    """A CSV whose header cannot be used (the message names the file)."""


def parse_header(line: str, path: str = "<csv>") -> Header:
    """Column positions from the header line; ValueError (a clear message) when unusable."""
    names = [c.strip().lower() for c in next(csv.reader([line.lstrip("\ufeff")]), [])]
    missing = [c for c in ("id", "url") if c not in names]
    if missing:
        raise CsvHeaderError(
            f"{path}: header {names} lacks column(s) {missing}; expected the Kaggle GLD layout "
            "id,url[,landmark_id]"
        )
    label = names.index("landmark_id") if "landmark_id" in names else None
    return Header(names.index("id"), names.index("url"), label, len(names))


def read_header(path: str) -> Header:
    """The header of a CSV (reads only its first line); ValueError/FileNotFoundError with the path."""
    with storage.open_read(path) as raw:
        first = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="").readline()
    if not first.strip():
        raise CsvHeaderError(f"{path}: empty CSV (no header line)")
    return parse_header(first.rstrip("\r\n"), path)


def assign_split(image_id: str, labelled: bool, mode: str, val_fraction: float) -> str:
    """train/val/test for one row; deterministic, so reruns agree."""
    if mode == "test" or (mode == "auto" and not labelled):
        return "test"
    return "val" if stable_fraction("split", image_id) < val_fraction else "train"


def parse_line(
    line: str,
    header: Header,
    order: Tuple[int, int],
    base_dir: str,
    mode: str,
    val_fraction: float,
) -> Union[Row, Failure]:
    """One CSV line -> a `Row`, or a `bad_row` `Failure` saying what is wrong."""
    try:
        fields = next(csv.reader([line], strict=True))
    except csv.Error as e:
        return Failure("", line[:200], "bad_row", f"line {order[1]}: {e}")

    def get(i: Optional[int]) -> str:
        return fields[i].strip() if i is not None and i < len(fields) else ""

    image_id, url = get(header.id), get(header.url)
    if len(fields) != header.width:
        return Failure(image_id, url, "bad_row", f"line {order[1]}: {len(fields)} fields, header has {header.width}")
    if not image_id or not url:
        return Failure(image_id, url, "bad_row", f"line {order[1]}: empty id or url")
    raw_label = get(header.label)
    labelled = header.label is not None and mode != "test"
    if mode == "train" and header.label is None:
        return Failure(image_id, url, "bad_row", "--split=train needs a landmark_id column")
    label = schema.NO_LANDMARK
    if raw_label or labelled:
        try:
            label = int(raw_label)
        except ValueError:
            return Failure(image_id, url, "bad_row", f"line {order[1]}: landmark_id {raw_label!r} is not an integer")
    split = assign_split(image_id, labelled, mode, val_fraction)
    return Row(image_id, url, fetch.resolve(url, base_dir), label, split, order)


def iter_csv(csv_index: int, path: str, mode: str, val_fraction: float) -> Iterator[Union[Row, Failure]]:
    """Every data line of one CSV as a `Row` or a `Failure`, in file order (blank lines skipped)."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"--split must be one of {SPLIT_MODES}, not {mode!r}")
    base_dir = storage.dirname(path)
    with storage.open_read(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        header = None
        for line_no, line in enumerate(text, start=1):
            line = line.rstrip("\r\n")
            if header is None:
                header = parse_header(line, path)
                continue
            if not line.strip():
                continue
            yield parse_line(line, header, (csv_index, line_no), base_dir, mode, val_fraction)
