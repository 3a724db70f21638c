"""The CSV files prediction writes and evaluation reads, in the Kaggle Google-Landmarks layout.

  submission.csv   id,landmarks        landmarks = "<landmark_id> <confidence>", or empty (no landmark)
  neighbours.csv   id,rank,neighbour_id,landmark_id,similarity   (raw top-k per embedded query)
  solution CSV     id,landmark_id      landmark_id empty = a non-landmark query; several ids may be
                                       space-separated (any of them is correct)
Writers go through a temporary file and a rename, so a crash leaves no half file under the name.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from pipelines.cli.cli_errors import InputError

SUBMISSION_HEADER = ["id", "landmarks"]
NEIGHBOURS_HEADER = ["id", "rank", "neighbour_id", "landmark_id", "similarity"]


class BadCsvError(InputError, ValueError):
    """A CSV that cannot be read as its layout says; the message names the file and row."""


def _write_atomic(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def write_rows(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV with `header` and `rows`, via a temporary file and a rename."""
    _write_atomic(path, header, rows)


def write_json(path: str, obj) -> None:
    """`obj` as indented JSON at `path`, via a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def read_rows(path: str, required: Sequence[str]) -> List[Dict[str, str]]:
    """The rows of a CSV with a header, as dicts (blank lines skipped). Read strictly, since a
    silently misread file would be scored as if it were right: BadCsvError naming the file and
    line for bytes that are not UTF-8, a missing column, a row with another number of fields
    than the header, or a quoted field running over several lines or to the end of the file
    (an unbalanced quote that would swallow the rows after it)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadCsvError(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8 (save the file as "
                          "UTF-8)") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None) or []
        missing = [c for c in required if c not in header]
        if missing:
            raise BadCsvError(f"{path}: missing column(s) {missing}; header is {header or None}")
        rows, start = [], reader.line_num + 1
        for n, row in enumerate(reader, start=2):
            if any("\n" in value or "\r" in value for value in row):
                raise BadCsvError(f"{path}: row {n}: a quoted field runs from line {start} to {reader.line_num} "
                                  "(an unbalanced quote?)")
            if row and len(row) != len(header):
                raise BadCsvError(f"{path}: row {n} (line {reader.line_num}): {len(row)} field(s), the header has "
                                  f"{len(header)}")
            if row:
                rows.append(dict(zip(header, row)))
            start = reader.line_num + 1
    except csv.Error as e:  # strict mode: a quote left open at the end of the file, text after a quote
        raise BadCsvError(f"{path}: line {reader.line_num}: {e} (an unbalanced quote?)") from None
    return rows


def write_submission(path: str, rows: Iterable[Tuple[str, Optional[Tuple[int, float]]]]) -> None:
    """One line per (id, prediction or None)."""
    _write_atomic(path, SUBMISSION_HEADER,
                  ([i, "" if p is None else f"{p[0]} {p[1]:.6f}"] for i, p in rows))


def unique_ids(path: str, rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """`rows`, after checking that no id appears twice (a blank row counts: one answer per id)."""
    first: Dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        if row["id"] in first:
            raise BadCsvError(f"{path}: row {n}: duplicate id {row['id']!r} (first in row {first[row['id']]})")
        first[row["id"]] = n
    return rows


def _prediction(path: str, n: int, value: str) -> Tuple[int, float]:
    """'<landmark_id> <confidence>' -> (landmark, confidence), a finite confidence."""
    parts = value.split()
    try:
        if len(parts) != 2:
            raise ValueError
        landmark, confidence = int(parts[0]), float(parts[1])
    except ValueError:
        raise BadCsvError(f"{path}: row {n}: landmarks must be '<landmark_id> <confidence>', got {value!r}") from None
    if not math.isfinite(confidence):
        raise BadCsvError(f"{path}: row {n}: confidence {parts[1]!r} is not a finite number (GAP ranks by it)")
    return landmark, confidence


def read_submission(path: str) -> Dict[str, Tuple[int, float]]:
    """id -> (landmark, confidence) for the rows that predict a landmark."""
    out: Dict[str, Tuple[int, float]] = {}
    for n, row in enumerate(unique_ids(path, read_rows(path, SUBMISSION_HEADER)), start=2):
        value = (row["landmarks"] or "").strip()
        if value:
            out[row["id"]] = _prediction(path, n, value)
    return out


def read_solution(path: str) -> Dict[str, FrozenSet[int]]:
    """id -> set of correct landmark ids (empty for a non-landmark query)."""
    solution = {}
    for n, row in enumerate(unique_ids(path, read_rows(path, ["id", "landmark_id"])), start=2):
        try:
            solution[row["id"]] = frozenset(int(x) for x in (row["landmark_id"] or "").split())
        except ValueError:
            raise BadCsvError(f"{path}: row {n}: landmark_id {row['landmark_id']!r} is not integers") from None
    return solution


def write_neighbours(path: str, rows: Iterable[Tuple[str, int, str, int, float]]) -> None:
    """(id, rank from 1, neighbour image id, its landmark, similarity) rows."""
    _write_atomic(path, NEIGHBOURS_HEADER, ((i, r, n, l, f"{s:.6f}") for i, r, n, l, s in rows))


def read_neighbours(path: str) -> Dict[str, List[Tuple[int, float]]]:
    """id -> [(landmark, similarity)], nearest first."""
    ranked: Dict[str, List[Tuple[int, int, float]]] = {}
    for row in read_rows(path, NEIGHBOURS_HEADER):
        ranked.setdefault(row["id"], []).append((int(row["rank"]), int(row["landmark_id"]), float(row["similarity"])))
    return {i: [(l, s) for _, l, s in sorted(v)] for i, v in ranked.items()}
