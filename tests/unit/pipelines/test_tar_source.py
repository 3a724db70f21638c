"""GLDv2 tar members read by byte range (pipelines.sources.tar_source) and the layouts' row parsing."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from pipelines.sources import layouts, tar_source
from pipelines.sources.csv_input import Row
from pipelines.images.errors import RowFailure


def make_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def tar(tmp_path):
    long_name = "/".join(["deep"] * 40) + "/abcdef0123.jpg"  # > 100 chars: a GNU/pax long-name header
    members = [("a/b/c/abc111.jpg", b"first" * 100), (long_name, b"\xff\xd8second"), ("a/b/c/abc333.jpg", b"")]
    return make_tar(tmp_path / "images_000.tar", members), members


def test_headers_give_each_members_exact_byte_range(tar):
    path, members = tar
    found = list(tar_source.index_tar(str(path)))
    assert [(m.image_id, m.name, m.size) for m in found] == [
        ("abc111", members[0][0], 500), ("abcdef0123", members[1][0], 8), ("abc333", members[2][0], 0)]
    for m, (_, data) in zip(found, members):
        assert tar_source.read_member(tar_source.location(m), 1 << 20) == data
    hashed = list(tar_source.index_tar(str(path), hashlib.md5(path.read_bytes()).hexdigest()))
    assert hashed == found  # the sequential, hashing pass finds the same ranges
    with pytest.raises(tar_source.TarChecksumError, match="the list says 0000"):
        list(tar_source.index_tar(str(path), "0" * 32))


def test_member_reads_fail_per_row_with_a_reason(tar, tmp_path):
    path, members = tar
    first = next(tar_source.index_tar(str(path)))
    good_md5 = hashlib.md5(members[0][1]).hexdigest()
    assert tar_source.read_member(tar_source.location(first, good_md5), 1000) == members[0][1]

    def reason(loc, max_bytes=1 << 20):
        with pytest.raises(RowFailure) as e:
            tar_source.read_member(loc, max_bytes)
        return e.value.reason

    assert reason(tar_source.location(first, "1" * 32)) == "md5_mismatch"
    assert reason(tar_source.location(first), max_bytes=499) == "too_large"
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: first.offset + 100])
    assert reason(tar_source.location(first).replace(str(path), str(cut))) == "truncated"
    assert reason(tar_source.location(first).replace(str(path), str(tmp_path / "gone.tar"))) == "not_found"
    assert reason("tar-member:x:y") == "fetch_error"


def test_a_transport_error_on_a_member_is_retried_then_reported(tar, monkeypatch):
    from pipelines.sources import fetch, storage

    path, members = tar
    loc = tar_source.location(next(tar_source.index_tar(str(path))))
    calls = []
    real = storage.read_range

    def flaky(p, offset, length):
        calls.append(offset)
        if len(calls) == 1:
            raise ConnectionResetError("reset by peer")
        return real(p, offset, length)

    monkeypatch.setattr(storage, "read_range", flaky)
    assert fetch.fetch(loc, "", fetch.FetchConfig(retries=2, backoff_s=0.0)) == members[0][1]
    monkeypatch.setattr(storage, "read_range", lambda *a: (_ for _ in ()).throw(ConnectionResetError("down")))
    with pytest.raises(RowFailure) as e:
        fetch.fetch(loc, "", fetch.FetchConfig(retries=1, backoff_s=0.0))
    assert e.value.reason == "fetch_error" and "after 2 tries" in e.value.detail


def test_md5_lists_and_tar_globs(tmp_path):
    lst = tmp_path / "md5.txt"
    lst.write_text(f"{'a' * 32}  images_000.tar\n\n{'B' * 32} *x/y/z/xyz.jpg\nother.jpg {'c' * 32}\n")
    assert list(tar_source.read_md5_list(str(lst))) == [
        ("images_000.tar", "a" * 32), ("x/y/z/xyz.jpg", "b" * 32), ("other.jpg", "c" * 32)]
    lst.write_text("not an md5 line\n")
    with pytest.raises(ValueError, match="md5.txt:1"):
        list(tar_source.read_md5_list(str(lst)))
    for n in (1, 0):
        (tmp_path / f"images_00{n}.tar").write_bytes(b"")
    assert tar_source.expand_tars(f"{tmp_path}/images_*.tar,{tmp_path}/images_000.tar") == [
        str(tmp_path / "images_000.tar"), str(tmp_path / "images_001.tar")]
    with pytest.raises(ValueError, match="matches no file"):
        tar_source.expand_tars(f"{tmp_path}/index_*.tar")


def test_kaggle_rows_derive_the_photo_path_and_split(tmp_path):
    (tmp_path / "train.csv").write_text("id,landmark_id\nabc123,7\nab,1\nabd456,\nabe789,3,extra\n")
    rows = list(layouts.iter_rows(0, str(tmp_path / "train.csv"), "auto", 0.0, layouts.Layout("kaggle")))
    assert rows[0] == Row("abc123", str(tmp_path / "train/a/b/c/abc123.jpg"), str(tmp_path / "train/a/b/c/abc123.jpg"),
                          7, "train", (0, 2))
    # a malformed line keeps its id (as the urls layout does)
    assert [(r.image_id, r.reason) for r in rows[1:]] == [("ab", "bad_row"), ("abd456", "bad_row"), ("abe789", "bad_row")]
    (tmp_path / "sample_submission.csv").write_text("id,landmarks\nfff000,\n")
    rows = list(layouts.iter_rows(0, str(tmp_path / "sample_submission.csv"), "auto", 0.0,
                                  layouts.Layout("kaggle", images_root="gs://b/test")))
    assert rows == [Row("fff000", "gs://b/test/f/f/f/fff000.jpg", "gs://b/test/f/f/f/fff000.jpg", -1, "test", (0, 2))]
    tarred = list(layouts.iter_rows(0, str(tmp_path / "sample_submission.csv"), "test", 0.0,
                                    layouts.Layout("kaggle", tars=True)))
    assert tarred[0].url == "f/f/f/fff000.jpg" and tarred[0].location == ""
    with pytest.raises(ValueError, match="train_clean.csv layout"):
        layouts.check_header(str(tmp_path / "train.csv"), layouts.Layout("gldv2_clean"))
