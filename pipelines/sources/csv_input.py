"""Rows of Kaggle GLD CSVs (`id,url,landmark_id` or `id,url`, quoted or not, local or gs://).

Records are read one physical line at a time, so one malformed line (wrong arity, an unbalanced
quote, an empty id, a non-integer landmark_id, bytes that are not UTF-8) is one `bad_row` failure
that keeps its id where one can be read and says what is wrong, and never swallows the lines
after it. The one exception is a quoted field with a newline inside (legal CSV): while a quote is
open the next lines are joined, up to `MAX_RECORD_LINES`, and kept joined only when the result
parses strictly; so every id as the csv module reads it is one row, and a quote that never closes
stays the one bad line. Bytes are decoded strictly: a row that is not UTF-8 fails, it is never
"repaired" into another id or url. Relative urls are resolved against the CSV's folder, which is
how `landmarks-mini` is laid out. The split is decided here, per row: `--split=auto` sends a CSV
without a landmark_id column to `test` and other rows to train/val by a stable hash of the id;
`--split=train` requires labels; `--split=test` keeps labels if present.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

from pipelines import schema
from pipelines.sources import fetch, storage
from pipelines.cli.cli_errors import InputError
from pipelines.graph.shards import stable_fraction

SPLIT_MODES = ("auto", "train", "test")
# How many physical lines one record may span (quoted newlines); more is a bad row.
MAX_RECORD_LINES = 32
_RECOVERED_URL_CHARS = 1000
# The longest line read whole (a GLD row is ~150 characters). A longer line (a preallocated file of
# NUL bytes without a newline, a binary file named as the CSV) fails as one `bad_row` and only its
# first `KEPT_PREFIX_CHARS` characters are kept: memory stays bounded whatever the file holds.
MAX_LINE_CHARS = 1 << 20
KEPT_PREFIX_CHARS = 100


class Row(NamedTuple):
    """One valid input row. `order` = (csv index, line number): the first occurrence of an id wins."""

    image_id: str
    url: str  # as written in the CSV (reported in failures.csv and stored as the source url)
    location: str  # where to fetch it (relative paths resolved against the CSV's folder)
    landmark_id: int
    split: str
    order: Tuple[int, int]


class Failure(NamedTuple):
    """One input row that is not written; `reason` is one of `pipelines.images.errors.REASONS`."""

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
        first = raw.readline(MAX_LINE_CHARS + 1)
    if len(first) > MAX_LINE_CHARS:
        raise CsvHeaderError(f"{path}: the header line is longer than {MAX_LINE_CHARS} bytes (not a CSV?)")
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CsvHeaderError(f"{path}: the header line is not UTF-8 ({e.reason} at byte {e.start})") from None
    if not line.strip():
        raise CsvHeaderError(f"{path}: empty CSV (no header line)")
    return parse_header(line.rstrip("\r\n"), path)


def assign_split(image_id: str, labelled: bool, mode: str, val_fraction: float) -> str:
    """train/val/test for one row; deterministic, so reruns agree."""
    if mode == "test" or (mode == "auto" and not labelled):
        return "test"
    return "val" if stable_fraction("split", image_id) < val_fraction else "train"


def _explain(error: csv.Error) -> str:
    """The csv module's complaint in a user's words (its own text kept after a colon)."""
    text = str(error)
    if "unexpected end of data" in text or "EOF" in text:
        return f"unbalanced quote (a quoted field is never closed): {text}"
    if "expected after" in text:
        return f"text after a closing quote: {text}"
    if "field limit" in text:
        return f"a field longer than the csv module's limit of {csv.field_size_limit()} characters: {text}"
    return text


def lenient_fields(line: str) -> List[str]:
    """The stripped fields of a line that did not parse strictly: a lenient parse, else a split on commas."""
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error:  # e.g. a field over the size limit: lenient parsing refuses it too
        fields = [f.strip('"') for f in line.split(",")]
    return [f.strip() for f in fields]


def _recover(line: str, header: Header) -> Tuple[str, str]:
    """(id, url) of a line that did not parse strictly."""
    fields = lenient_fields(line)

    def get(i: Optional[int]) -> str:
        return fields[i] if i is not None and i < len(fields) else ""

    return get(header.id), get(header.url)[:_RECOVERED_URL_CHARS]


def undecodable(line: str) -> Optional[str]:
    """Where a line read with `surrogateescape` holds bytes that are not UTF-8 (None if it is UTF-8).
    Valid UTF-8 never decodes to a surrogate, so the first unencodable character is the byte."""
    if line.isascii():
        return None
    try:
        line.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return f"byte 0x{ord(line[e.start]) - 0xDC00:02x} at character {e.start + 1} is not UTF-8"


def parse_line(
    line: str,
    header: Header,
    order: Tuple[int, int],
    base_dir: str,
    mode: str,
    val_fraction: float,
) -> Union[Row, Failure]:
    """One CSV record -> a `Row`, or a `bad_row` `Failure` saying what is wrong (with the id
    when it can be read). `line` may hold undecodable bytes as surrogates (`surrogateescape`)."""
    bad_bytes = undecodable(line)
    if bad_bytes:
        shown = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        image_id, url = _recover(shown, header)
        return Failure(image_id, url, "bad_row", f"line {order[1]}: {bad_bytes} (ids and urls are never repaired)")
    try:
        fields = next(csv.reader([line], strict=True))
    except csv.Error as e:
        image_id, url = _recover(line, header)
        return Failure(image_id, url, "bad_row", f"line {order[1]}: {_explain(e)}")

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


def _quote_open(text: str) -> bool:
    """True when `text` ends inside a quoted field (an odd number of quote characters)."""
    return text.count('"') % 2 == 1


def _parses(text: str) -> bool:
    try:
        next(csv.reader([text], strict=True))
        return True
    except csv.Error:
        return False


class LongLine(str):
    """The kept prefix of a line longer than the bound (`bounded_lines`); `chars` is its length."""

    chars: int = 0


def bounded_lines(text: io.TextIOBase, max_chars: Optional[int] = None) -> Iterator[str]:
    """The lines of `text`, line ends kept, each read whole when it holds at most `max_chars`
    characters; a longer one comes as a `LongLine` of its first `KEPT_PREFIX_CHARS` characters
    (line end stripped) and the rest of it is read through in blocks and dropped (never held).
    `max_chars` defaults to `MAX_LINE_CHARS`."""
    max_chars = MAX_LINE_CHARS if max_chars is None else max_chars
    while True:
        line = text.readline(max_chars + 1)
        if not line:
            return
        if len(line) <= max_chars:
            yield line
            continue
        kept = LongLine(line[:KEPT_PREFIX_CHARS].rstrip("\r\n"))
        kept.chars = len(line)
        while not line.endswith("\n"):
            line = text.readline(1 << 16)
            kept.chars += len(line)
            if not line:
                break
        yield kept


def printable(text: str) -> str:
    """`text` with bytes that are not UTF-8 and control characters (NUL, ...) shown as `\\xNN`."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def long_line_failure(line: LongLine, line_no: int, recover: Callable[[str], Tuple[str, str]]) -> "Failure":
    """The `bad_row` of a line over `MAX_LINE_CHARS`: its number and length, and an id and url
    taken (by `recover`) from its kept prefix, control characters escaped."""
    image_id, url = recover(printable(line)[:KEPT_PREFIX_CHARS])
    return Failure(image_id, url, "bad_row",
                   f"line {line_no}: {line.chars} characters, over the limit of {MAX_LINE_CHARS} "
                   f"(only the first {KEPT_PREFIX_CHARS} kept)")


def records(text_lines: Iterable[str]) -> Iterator[Tuple[int, str]]:
    """(first line number, text without its line end) of each record, from a CSV's lines as
    decoded with `surrogateescape` (so bytes that are not UTF-8 survive, exactly, for
    `parse_line` to refuse). A line ending inside a quoted field is joined with the next ones
    (at most `MAX_RECORD_LINES` in all) when that closes the quote and parses strictly; else it
    stays alone (a bad row) and reading resumes at the next line.
    """
    lines = iter(text_lines)
    pending: List[Tuple[int, str]] = []  # lines read ahead and given back
    line_no = 0

    def next_line() -> Optional[Tuple[int, str]]:
        nonlocal line_no
        if pending:
            return pending.pop(0)
        text = next(lines, None)
        if text is None:
            return None
        line_no += 1
        return line_no, text

    while True:
        item = next_line()
        if item is None:
            return
        number, text = item
        if isinstance(text, LongLine):
            yield number, text
            continue
        if _quote_open(text):
            ahead: List[Tuple[int, str]] = []
            joined = text
            while _quote_open(joined) and len(ahead) < MAX_RECORD_LINES - 1:
                more = next_line()
                if more is None:
                    break
                ahead.append(more)
                if isinstance(more[1], LongLine) or len(joined) + len(more[1]) > MAX_LINE_CHARS:
                    break
                joined += more[1]
            if ahead and not _quote_open(joined) and _parses(joined.rstrip("\r\n")):
                text = joined
            else:
                pending[:0] = ahead
        yield number, text.rstrip("\r\n")


def iter_csv(csv_index: int, path: str, mode: str, val_fraction: float) -> Iterator[Union[Row, Failure]]:
    """Every data record of one CSV as a `Row` or a `Failure`, in file order (blank lines skipped)."""
    if mode not in SPLIT_MODES:
        raise ValueError(f"--split must be one of {SPLIT_MODES}, not {mode!r}")
    base_dir = storage.dirname(path)
    with storage.open_read(path) as raw:
        # A text layer reads in blocks (a gs:// reader has no fast readline of its own).
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        header = None
        for line_no, line in records(bounded_lines(text)):
            if isinstance(line, LongLine):
                if header is None:
                    raise CsvHeaderError(f"{path}: the header line is longer than {MAX_LINE_CHARS} characters")
                yield long_line_failure(line, line_no, lambda shown: _recover(shown, header))
                continue
            if header is None:
                if undecodable(line):
                    raise ValueError(f"{path}: the header line is not UTF-8")
                header = parse_header(line, path)
                continue
            if not line.strip():
                continue
            yield parse_line(line, header, (csv_index, line_no), base_dir, mode, val_fraction)
