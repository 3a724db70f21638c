"""Landmark names: `--landmark_names=CSV` for predict, the Python API, the report and the PNGs.

Two layouts, told apart by the header:

  landmark_id,name       landmarks-mini's landmarks.csv (any names table in this form)
  landmark_id,category   GLDv2's train_label_to_category.csv: category is a Wikimedia Commons URL
                         (`http://commons.wikimedia.org/wiki/Category:Haleakal%C4%81_National_Park`),
                         shown as its readable title ("Haleakalā National Park")

Names only label answers: ids stay the submission's format. A file that cannot be read this way
(missing, no such column, an id that is not an integer or appears twice) is an InputError naming
the file and row.
"""

from __future__ import annotations

import csv
import urllib.parse
from typing import Dict, Mapping, Optional

from pipelines.cli.cli_errors import InputError

NAME_COLUMNS = ("name", "category")  # the first one the header has is read
CATEGORY_PREFIX = "Category:"

Names = Mapping[int, str]


class BadNamesError(InputError, ValueError):
    """A names CSV that cannot be read; the message names the file and the row."""


def readable(value: str) -> str:
    """A GLDv2 category URL as its title ("...Category:Foo_bar%C3%A9" -> "Foo baré"); other
    values stripped and returned as they are."""
    value = value.strip()
    if "://" in value or value.startswith(CATEGORY_PREFIX):
        tail = value.rsplit("/", 1)[-1]
        tail = tail.split(CATEGORY_PREFIX, 1)[-1]
        return urllib.parse.unquote(tail).replace("_", " ").strip() or value
    return value


def read_names(path: str) -> Dict[int, str]:
    """landmark id -> name from a `landmark_id,name` or `landmark_id,category` CSV."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise BadNamesError(f"{path}: cannot read the landmark names: {e.strerror or e}") from None
    with f:
        reader = csv.DictReader(f)
        try:
            header = [h.strip() for h in (reader.fieldnames or [])]
        except UnicodeDecodeError:
            raise BadNamesError(f"{path}: not a UTF-8 CSV") from None
        reader.fieldnames = header
        column = next((c for c in NAME_COLUMNS if c in header), None)
        if "landmark_id" not in header or column is None:
            raise BadNamesError(f"{path}: header {header} has no landmark_id and name (or GLDv2's category) column")
        names: Dict[int, str] = {}
        first: Dict[int, int] = {}
        try:
            for n, row in enumerate(reader, start=2):
                raw = (row.get("landmark_id") or "").strip()
                try:
                    landmark = int(raw)
                except ValueError:
                    raise BadNamesError(f"{path}: row {n}: landmark_id {raw!r} is not an integer") from None
                if landmark in first:
                    raise BadNamesError(f"{path}: row {n}: landmark_id {landmark} again (first in row {first[landmark]})")
                first[landmark] = n
                names[landmark] = readable(row.get(column) or "")
        except UnicodeDecodeError:
            raise BadNamesError(f"{path}: not a UTF-8 CSV") from None
        except csv.Error as e:
            raise BadNamesError(f"{path}: not a CSV: {e}") from None
    return names


def load(path: Optional[str]) -> Dict[int, str]:
    """`read_names(path)`, or no names when `path` is empty."""
    return read_names(path) if path else {}


def label(landmark: int, names: Names) -> str:
    """"<id> <name>" when the landmark has a name, else the id."""
    name = names.get(int(landmark))
    return f"{landmark} {name}" if name else str(landmark)
