"""Input layouts `make preprocess` reads (`--layout`), each turned into the same `Row`s.

  urls         the 2018 Kaggle CSV `id,url[,landmark_id]` (`pipelines.sources.csv_input`)
  kaggle       Kaggle GLR 2020/2021: `train.csv` = `id,landmark_id`, `sample_submission.csv` =
               `id,landmarks` (no label: test); the photo of id `abc...` is
               `IMAGES_ROOT/a/b/c/abc....jpg`. IMAGES_ROOT (`--images_root`) defaults to the
               CSV's folder + `train/` for a labelled CSV, + `test/` otherwise (Kaggle's tree)
  gldv2_clean  GLDv2's `train_clean.csv` = `landmark_id,images` (space-separated ids): one row per
               id; photos in the same a/b/c tree (default: the CSV's folder + `train/`)
With `--tars` the photos come from GLDv2's tar shards instead of a tree, whatever the layout
(`pipelines.sources.tar_locate`): rows leave this module without a location and are located by id.

Parsing follows `csv_input`: each physical line on its own, one malformed line is one `bad_row`
failure naming its line, and nothing else is lost. Ids must be letters, digits, `_` or `-` and at
least 3 characters, since the id names the file (no `..` or `/` can leave the images root).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from typing import Iterator, List, Optional, Tuple, Union

from pipelines import schema
from pipelines.sources import csv_input, storage
from pipelines.sources.csv_input import Failure, Row

LAYOUTS = ("urls", "kaggle", "gldv2_clean")
_ID = re.compile(r"^[A-Za-z0-9_-]{3,}$")


@dataclasses.dataclass(frozen=True)
class Layout:
    """How to read the input CSVs and where their photos are."""

    name: str = "urls"
    images_root: str = ""  # kaggle / gldv2_clean: the a/b/c/<id>.jpg tree ("" = derived per CSV)
    tars: bool = False  # photos come from tar shards: rows get their location later, by id

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise ValueError(f"--layout must be one of {LAYOUTS}, not {self.name!r}")


def tree_path(images_root: str, image_id: str) -> str:
    """Where the Kaggle / GLDv2 tree keeps the photo of `image_id`: ROOT/a/b/c/<id>.jpg."""
    return storage.join(images_root, image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")


def images_root(layout: Layout, csv_path: str, labelled: bool) -> str:
    """The a/b/c/<id>.jpg tree of a kaggle / gldv2_clean CSV: `--images_root`, else the CSV's
    folder + `train/` (labelled) or `test/`."""
    return layout.images_root or storage.join(storage.dirname(csv_path), "train" if labelled else "test")


def member_name(image_id: str) -> str:
    """The same path inside a GLDv2 tar (what failures.csv names before a row is located)."""
    return "/".join([image_id[0], image_id[1], image_id[2], f"{image_id}.jpg"])


def _columns(path: str, first_line: str) -> List[str]:
    return [c.strip().lower() for c in next(csv.reader([first_line.lstrip("\ufeff")]), [])]


def _header_error(layout: Layout, path: str, names: List[str]) -> Optional[str]:
    if layout.name == "kaggle" and "id" not in names:
        return f"{path}: header {names} lacks an id column; --layout=kaggle reads id[,landmark_id]"
    if layout.name == "gldv2_clean" and not {"landmark_id", "images"} <= set(names):
        return f"{path}: header {names} is not GLDv2's train_clean.csv layout landmark_id,images"
    return None


def check_header(path: str, layout: Layout) -> bool:
    """Whether the CSV carries labels; refuses, with a clear message, a header that does not fit
    the layout (reads one line)."""
    if layout.name == "urls":
        return csv_input.read_header(path).label is not None
    with storage.open_read(path) as raw:
        first = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="").readline(
            csv_input.MAX_LINE_CHARS + 1)
    if len(first) > csv_input.MAX_LINE_CHARS:
        raise ValueError(f"{path}: the header line is longer than {csv_input.MAX_LINE_CHARS} characters (not a CSV?)")
    if not first.strip():
        raise ValueError(f"{path}: empty CSV (no header line)")
    names = _columns(path, first.rstrip("\r\n"))
    error = _header_error(layout, path, names)
    if error:
        raise ValueError(error)
    return layout.name == "gldv2_clean" or "landmark_id" in names


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) of a CSV file, line ends stripped; bytes that are not UTF-8 survive as
    surrogates (`surrogateescape`), for `_fields` to refuse, never to be repaired into an id."""
    with storage.open_read(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        for line_no, line in enumerate(csv_input.bounded_lines(text), start=1):
            if line_no == 1 and isinstance(line, csv_input.LongLine):
                raise csv_input.CsvHeaderError(
                    f"{path}: the header line is longer than {csv_input.MAX_LINE_CHARS} characters")
            yield line_no, line if isinstance(line, csv_input.LongLine) else line.rstrip("\r\n")


def _shown(line: str) -> str:
    """A line as text that can be written anywhere: bytes that are not UTF-8 as `\\xNN`."""
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _malformed(line: str, header: List[str], id_column: str, line_no: int, problem: str) -> Iterator[Failure]:
    """The `bad_row` failures of a line that did not parse: one per id its `id_column` still shows
    when read leniently (`id` holds one, GLDv2's `images` several), else one without an id."""
    shown = csv_input.printable(line) if isinstance(line, csv_input.LongLine) else _shown(line)
    fields = csv_input.lenient_fields(shown)
    column = header.index(id_column)
    ids = [i for i in (fields[column].split() if column < len(fields) else []) if _ID.match(i)]
    for image_id in ids or [""]:
        yield Failure(image_id, shown[:200], "bad_row", problem)


def _fields(line: str, width: int, line_no: int) -> Union[List[str], str]:
    """The stripped fields of a line, or what is wrong with it."""
    if isinstance(line, csv_input.LongLine):
        return csv_input.long_line_failure(line, line_no, lambda text: ("", "")).detail
    bad_bytes = csv_input.undecodable(line)
    if bad_bytes:
        return f"line {line_no}: {bad_bytes} (ids are never repaired)"
    try:
        fields = next(csv.reader([line], strict=True))
    except csv.Error as e:
        return f"line {line_no}: {e}"
    if len(fields) != width:
        return f"line {line_no}: {len(fields)} fields, header has {width}"
    return [f.strip() for f in fields]


def _label(raw: str, line_no: int) -> Union[int, str]:
    try:
        return int(raw)
    except ValueError:
        return f"line {line_no}: landmark_id {raw!r} is not an integer"


def _located(layout: Layout, root: str, image_id: str) -> Tuple[str, str]:
    """(url, location) of an id's photo: the tree path, or (its tar member name, "") with --tars."""
    if layout.tars:
        return member_name(image_id), ""
    location = tree_path(root, image_id)
    return location, location


def _kaggle_rows(csv_index: int, path: str, mode: str, val_fraction: float, layout: Layout):
    header: Optional[List[str]] = None
    for line_no, line in _lines(path):
        if header is None:
            header = _columns(path, line)
            labelled_csv = "landmark_id" in header
            root = images_root(layout, path, labelled_csv)
            continue
        if not line.strip():
            continue
        fields = _fields(line, len(header), line_no)
        if isinstance(fields, str):
            yield from _malformed(line, header, "id", line_no, fields)
            continue
        image_id = fields[header.index("id")]
        if not _ID.match(image_id):
            yield Failure(image_id, line[:200], "bad_row", f"line {line_no}: id {image_id!r} cannot name a photo")
            continue
        url, location = _located(layout, root, image_id)
        if mode == "train" and not labelled_csv:
            yield Failure(image_id, url, "bad_row", "--split=train needs a landmark_id column")
            continue
        label = schema.NO_LANDMARK
        if labelled_csv and (fields[header.index("landmark_id")] or mode != "test"):
            label = _label(fields[header.index("landmark_id")], line_no)
            if isinstance(label, str):
                yield Failure(image_id, url, "bad_row", label)
                continue
        split = csv_input.assign_split(image_id, labelled_csv and mode != "test", mode, val_fraction)
        yield Row(image_id, url, location, label, split, (csv_index, line_no))


def _clean_rows(csv_index: int, path: str, mode: str, val_fraction: float, layout: Layout):
    header: Optional[List[str]] = None
    root = images_root(layout, path, True)
    for line_no, line in _lines(path):
        if header is None:
            header = _columns(path, line)
            continue
        if not line.strip():
            continue
        fields = _fields(line, len(header), line_no)
        if isinstance(fields, str):
            yield from _malformed(line, header, "images", line_no, fields)
            continue
        label = _label(fields[header.index("landmark_id")], line_no)
        for image_id in fields[header.index("images")].split():
            url, location = _located(layout, root, image_id) if _ID.match(image_id) else (image_id, "")
            if not _ID.match(image_id):
                yield Failure(image_id, line[:200], "bad_row", f"line {line_no}: id {image_id!r} cannot name a photo")
            elif isinstance(label, str):
                yield Failure(image_id, url, "bad_row", label)
            else:
                split = csv_input.assign_split(image_id, mode != "test", mode, val_fraction)
                yield Row(image_id, url, location, label, split, (csv_index, line_no))


def iter_rows(
    csv_index: int, path: str, mode: str, val_fraction: float, layout: Layout = Layout()
) -> Iterator[Union[Row, Failure]]:
    """Every row of one input CSV in the given layout, as `Row`s and `bad_row` `Failure`s."""
    if mode not in csv_input.SPLIT_MODES:
        raise ValueError(f"--split must be one of {csv_input.SPLIT_MODES}, not {mode!r}")
    if layout.name == "kaggle":
        return _kaggle_rows(csv_index, path, mode, val_fraction, layout)
    if layout.name == "gldv2_clean":
        return _clean_rows(csv_index, path, mode, val_fraction, layout)
    rows = csv_input.iter_csv(csv_index, path, mode, val_fraction)
    if not layout.tars:
        return rows
    # GLDv2's train.csv (id,url,landmark_id) with --tars: the photo is the id's tar member
    return (r._replace(url=member_name(r.image_id) if _ID.match(r.image_id) else r.url, location="")
            if isinstance(r, Row) else r for r in rows)
