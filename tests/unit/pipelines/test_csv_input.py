"""CSV rows: quoted or not, relative urls, split modes, and every malformed line as bad_row."""

from __future__ import annotations

import pytest

from pipelines.sources import csv_input
from pipelines.sources.csv_input import Failure, Row


def rows_of(tmp_path, text: str, mode: str = "auto", val_fraction: float = 0.0, name: str = "a.csv"):
    path = tmp_path / name
    path.write_text(text)
    return list(csv_input.iter_csv(0, str(path), mode, val_fraction))


def test_quoted_and_unquoted_headers_and_rows(tmp_path):
    quoted = rows_of(tmp_path, '"id","url","landmark_id"\n"a1","http://h/x.jpg",7\n', name="q.csv")
    plain = rows_of(tmp_path, "id,url,landmark_id\r\na1,http://h/x.jpg,7\r\n", name="p.csv")
    assert [(r.image_id, r.url, r.landmark_id, r.split) for r in quoted] == [("a1", "http://h/x.jpg", 7, "train")]
    assert [(r.image_id, r.url, r.landmark_id) for r in plain] == [("a1", "http://h/x.jpg", 7)]


def test_relative_urls_resolve_against_the_csv_folder(tmp_path):
    (row,) = rows_of(tmp_path, "id,url\nb,images/b.jpg\n")
    assert row.url == "images/b.jpg"
    assert row.location == str(tmp_path / "images" / "b.jpg")
    assert (row.split, row.landmark_id) == ("test", -1)


def test_malformed_lines_are_bad_rows_and_do_not_swallow_the_next(tmp_path):
    text = (
        "id,url,landmark_id\n"
        "ok1,u1,1\n"
        "short,u2\n"
        'quote,"u3,3\n'
        ",u4,4\n"
        "nourl,,5\n"
        "badlabel,u6,seven\n"
        "\n"
        "ok2,u7,2\n"
        "toomany,u8,8,9\n"
    )
    out = rows_of(tmp_path, text)
    assert [r.image_id for r in out if isinstance(r, Row)] == ["ok1", "ok2"]
    bad = [r for r in out if isinstance(r, Failure)]
    assert [b.reason for b in bad] == ["bad_row"] * 6
    assert [b.image_id for b in bad] == ["short", "quote", "", "nourl", "badlabel", "toomany"]  # the id is kept
    assert [r.order for r in out if isinstance(r, Row)] == [(0, 2), (0, 9)]


def test_split_modes(tmp_path):
    labelled = "id,url,landmark_id\n" + "".join(f"i{i},u{i},{i % 3}\n" for i in range(200))
    auto = rows_of(tmp_path, labelled, "auto", 0.25)
    val = sum(r.split == "val" for r in auto)
    assert {r.split for r in auto} == {"train", "val"} and 30 <= val <= 70
    assert rows_of(tmp_path, labelled, "auto", 0.25) == auto  # deterministic
    forced = rows_of(tmp_path, labelled, "test")
    assert {r.split for r in forced} == {"test"} and [r.landmark_id for r in forced[:3]] == [0, 1, 2]
    unlabelled = rows_of(tmp_path, "id,url\nx,u\n", "train", name="u.csv")
    assert [f.reason for f in unlabelled] == ["bad_row"]
    empty_label = rows_of(tmp_path, "id,url,landmark_id\nx,u,\n", "test", name="e.csv")
    assert empty_label[0].landmark_id == -1
    assert rows_of(tmp_path, "id,url,landmark_id\nx,u,\n", "auto", name="e2.csv")[0].reason == "bad_row"


def test_header_errors(tmp_path):
    (tmp_path / "h.csv").write_text("name,link\nx,y\n")
    with pytest.raises(ValueError, match="lacks column"):
        csv_input.read_header(str(tmp_path / "h.csv"))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty CSV"):
        csv_input.read_header(str(tmp_path / "e.csv"))
