"""Rows of the Kaggle and train_clean layouts: bytes that are not UTF-8 fail the row, never repaired."""

from __future__ import annotations

from pipelines.sources import layouts
from pipelines.sources.csv_input import Failure, Row


def test_kaggle_row_with_bytes_that_are_not_utf8_fails_with_the_byte(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"id,landmark_id\nabc123,1\nab\xff\xfe9,2\n")
    good, bad = layouts.iter_rows(0, str(path), "auto", 0.0, layouts.Layout("kaggle"))
    assert isinstance(good, Row) and good.image_id == "abc123"
    assert isinstance(bad, Failure) and bad.reason == "bad_row"
    assert "0xff" in bad.detail and bad.url == "ab\\xff\\xfe9,2"  # shown escaped, writable as UTF-8


def test_train_clean_row_with_bytes_that_are_not_utf8_fails(tmp_path):
    path = tmp_path / "train_clean.csv"
    path.write_bytes(b"landmark_id,images\n7,abc123 def456\n8,gh\xe9ij\n")
    rows = list(layouts.iter_rows(0, str(path), "auto", 0.0, layouts.Layout("gldv2_clean")))
    assert [r.image_id for r in rows if isinstance(r, Row)] == ["abc123", "def456"]
    (bad,) = [r for r in rows if isinstance(r, Failure)]
    assert bad.reason == "bad_row" and "0xe9" in bad.detail


def test_malformed_train_clean_line_keeps_its_ids(tmp_path):
    (tmp_path / "train_clean.csv").write_text('landmark_id,images\n1,abc111 abd222\n2,abe333 abf444,extra\n3,"abg555\n')
    rows = list(layouts.iter_rows(0, str(tmp_path / "train_clean.csv"), "auto", 0.0, layouts.Layout("gldv2_clean")))
    assert [r.image_id for r in rows] == ["abc111", "abd222", "abe333", "abf444", "abg555"]
    assert [getattr(r, "reason", None) for r in rows] == [None, None, "bad_row", "bad_row", "bad_row"]
    assert "line 3: 3 fields, header has 2" in rows[2].detail
