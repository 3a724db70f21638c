"""`make preprocess` on each input layout, built in miniature here: a Kaggle GLR 2020/21 tree,
GLDv2's train_clean.csv, and GLDv2 tar shards (with md5 lists). Every row must be accounted for,
and the records must equal those written from the same photos through plain url paths."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile

import pytest

from pipelines import preprocess
from tests.pipeline import helpers
from tests.pipeline.test_preprocess_run import read_failures, written_records

TRAIN = {f"{i:x}{i:x}{i + 3:x}0f00dcafe{i:04d}": i % 3 for i in range(1, 9)}  # id -> landmark
TEST = [f"e{i}{i}77beef{i:04d}" for i in range(1, 4)]
RUN = ["--rows_per_shard=4", "--val_fraction=0.25"]


def tree_path(root, image_id):
    return root / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """The Kaggle layout (train.csv, sample_submission.csv, train/ and test/ trees) and, from the
    same photos, the url-path CSVs with the records they give."""
    root = tmp_path_factory.mktemp("kaggle")
    for image_id in [*TRAIN, *TEST]:
        path = tree_path(root / ("train" if image_id in TRAIN else "test"), image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(helpers.jpeg(400, 300, seed=image_id))
    (root / "train_urls.csv").write_text("id,url,landmark_id\n" + "".join(
        f"{i},{tree_path(root / 'train', i)},{l}\n" for i, l in TRAIN.items()))
    (root / "test_urls.csv").write_text("id,url\n" + "".join(f"{i},{tree_path(root / 'test', i)}\n" for i in TEST))
    ref = root / "ref"
    stats = preprocess.run([f"--csv={root / 'train_urls.csv'},{root / 'test_urls.csv'}", f"--output_dir={ref}", *RUN])
    assert stats["written"] == len(TRAIN) + len(TEST)
    return root, written_records(ref)


def test_kaggle_tree_gives_the_url_paths_records(kaggle, tmp_path):
    root, reference = kaggle
    (root / "train.csv").write_text("id,landmark_id\n" + "".join(f"{i},{l}\n" for i, l in TRAIN.items())
                                    + "00aa11bb22cc33dd,1\n../../etc,2\nbadlabel0000,x\n")
    (root / "sample_submission.csv").write_text("id,landmarks\n" + "".join(f"{i},\n" for i in TEST))
    out = tmp_path / "out"
    stats = preprocess.run([f"--csv={root / 'train.csv'},{root / 'sample_submission.csv'}", f"--output_dir={out}",
                            "--layout=kaggle", *RUN])
    assert written_records(out) == reference
    failures, _ = read_failures(out)
    assert failures == {("00aa11bb22cc33dd", "not_found"), ("../../etc", "bad_row"), ("badlabel0000", "bad_row")}
    assert stats["rows_in"] == len(TRAIN) + len(TEST) + 3 and stats["accounted_for"] is True


def test_train_clean_csv_expands_to_one_row_per_image(kaggle, tmp_path):
    root, reference = kaggle
    by_landmark = {}
    for image_id, landmark in TRAIN.items():
        by_landmark.setdefault(landmark, []).append(image_id)
    (root / "train_clean.csv").write_text("landmark_id,images\n" + "".join(
        f"{l},{' '.join(ids)}\n" for l, ids in sorted(by_landmark.items())) + "7,ffff0000ffff0000\nnan,abc123 def456\n")
    out = tmp_path / "out"
    stats = preprocess.run([f"--csv={root / 'train_clean.csv'}", f"--output_dir={out}", "--layout=gldv2_clean", *RUN])
    assert written_records(out) == {i: reference[i] for i in TRAIN}
    failures, _ = read_failures(out)
    assert failures == {("ffff0000ffff0000", "not_found"), ("abc123", "bad_row"), ("def456", "bad_row")}
    assert stats["rows_in"] == len(TRAIN) + 3 and stats["accounted_for"] is True


def make_tar(path, members):
    """A tar of (name, bytes) members, with a folder entry first (GLDv2 tars hold a/b/c/<id>.jpg)."""
    with tarfile.open(path, "w") as tar:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tars(kaggle, tmp_path):
    """The train photos in two tars (plus a member no CSV row names) and train_clean.csv."""
    root, _ = kaggle
    ids = sorted(TRAIN)
    photos = {i: tree_path(root / "train", i).read_bytes() for i in ids}
    halves = [ids[:4], ids[4:]]
    paths = []
    for n, half in enumerate(halves):
        paths.append(tmp_path / f"images_{n:03d}.tar")
        extra = [("x/y/z/xyz000extra.jpg", b"not listed anywhere")] if n else []
        make_tar(paths[-1], [(f"{i[0]}/{i[1]}/{i[2]}/{i}.jpg", photos[i]) for i in half] + extra)
    clean = tmp_path / "train_clean.csv"
    clean.write_text("landmark_id,images\n" + "".join(f"{l},{i}\n" for i, l in TRAIN.items()) + "5,0000notintars\n")
    return clean, paths, photos, halves


def without_urls(records):
    return {i: (split, dataclasses.replace(r, source_url="")) for i, (split, r) in records.items()}


def test_tar_shards_are_read_member_by_member_with_md5_checks(kaggle, tars, tmp_path, capsys):
    _, reference = kaggle
    clean, paths, photos, _ = tars
    ids = sorted(TRAIN)
    md5 = tmp_path / "md5.members.txt"
    lines = [f"{hashlib.md5(photos[i]).hexdigest()}  {i[0]}/{i[1]}/{i[2]}/{i}.jpg" for i in ids[2:]]
    lines[0] = f"{'0' * 32}  {ids[2]}.jpg"  # a wrong md5 for ids[2]; ids[0] and ids[1] unlisted
    md5.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = [f"--csv={clean}", f"--output_dir={out}", "--layout=gldv2_clean", f"--tars={tmp_path / 'images_*.tar'}",
            f"--tar_md5={md5}", *RUN]
    stats = preprocess.run(argv)
    records = written_records(out)
    good = ids[3:]
    assert without_urls(records) == without_urls({i: reference[i] for i in good})
    assert records[good[-1]][1].source_url == f"{paths[1]}#{good[-1][0]}/{good[-1][1]}/{good[-1][2]}/{good[-1]}.jpg"
    failures, _ = read_failures(out)
    assert failures == {(ids[0], "md5_missing"), (ids[1], "md5_missing"), (ids[2], "md5_mismatch"),
                        ("0000notintars", "not_found")}
    assert stats["rows_in"] == len(TRAIN) + 1 and stats["accounted_for"] is True
    capsys.readouterr()
    assert preprocess.run(argv) == stats  # a rerun resumes: every shard already done, same report
    assert "0 written" in capsys.readouterr().out


def test_whole_tar_md5_and_a_damaged_tar(kaggle, tars, tmp_path):
    _, reference = kaggle
    clean, paths, _, halves = tars
    md5 = tmp_path / "md5.tars.txt"
    md5.write_text(f"{hashlib.md5(paths[0].read_bytes()).hexdigest()}  images_000.tar\n"
                   f"{'f' * 32}  images_001.tar\n")
    out = tmp_path / "out"
    stats = preprocess.run([f"--csv={clean}", f"--output_dir={out}", "--layout=gldv2_clean",
                            f"--tars={paths[0]},{paths[1]}", f"--tar_md5={md5}", *RUN])
    assert without_urls(written_records(out)) == without_urls({i: reference[i] for i in halves[0]})
    failures, _ = read_failures(out)
    assert failures == {(i, "md5_mismatch") for i in halves[1]} | {("0000notintars", "not_found")}
    assert stats["accounted_for"] is True

    # a tar cut inside its last member, no md5 list: that member is `truncated`, the rest written
    data = paths[1].read_bytes()
    last = halves[1][-1]
    paths[1].write_bytes(data[: data.index(b"x/y/z/xyz000extra.jpg") - 600])
    out2 = tmp_path / "out2"
    stats = preprocess.run([f"--csv={clean}", f"--output_dir={out2}", "--layout=gldv2_clean",
                            f"--tars={paths[0]},{paths[1]}", *RUN])
    failures, _ = read_failures(out2)
    assert failures == {(last, "truncated"), ("0000notintars", "not_found")}
    assert set(written_records(out2)) == set(TRAIN) - {last} and stats["accounted_for"] is True
