"""The built-in data set: GLD layout, determinism, long tail, distractors, decodable varied images."""

from __future__ import annotations

import collections
import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines import synthetic

REPO = pathlib.Path(__file__).resolve().parents[3]
TINY = synthetic.parse_size("5,3,2,1,1", None)


def read_csv(path: pathlib.Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def all_files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("tiny")
    synthetic.generate(str(out), seed=3, size=TINY, workers=2)
    return out


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tiny_set, tmp_path):
    synthetic.generate(str(tmp_path), seed=3, size=TINY, workers=1)
    assert all_files(tmp_path) == all_files(tiny_set)


def test_another_seed_gives_other_images(tiny_set, tmp_path):
    synthetic.generate(str(tmp_path), seed=4, size=TINY, workers=1)
    first, second = ({v for k, v in all_files(d).items() if k.endswith(".jpg")} for d in (tiny_set, tmp_path))
    assert first and not first & second


def test_csv_layout_matches_google_landmarks(tiny_set):
    header, train = read_csv(tiny_set / "train.csv")
    assert header == ["id", "url", "landmark_id"]
    header, test = read_csv(tiny_set / "test.csv")
    assert header == ["id", "url"]
    header, solution = read_csv(tiny_set / "test_solution.csv")
    assert header == ["id", "landmark_id"]
    header, landmarks = read_csv(tiny_set / "landmarks.csv")
    assert header == ["landmark_id", "name"]

    ids = [r["id"] for r in train + test]
    assert len(ids) == len(set(ids))
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert [r["id"] for r in test] == [r["id"] for r in solution]
    known = {int(r["landmark_id"]) for r in landmarks}
    assert {int(r["landmark_id"]) for r in train} == known == set(range(len(TINY.train_counts)))
    for r in train + test:
        assert not pathlib.PurePosixPath(r["url"]).is_absolute()
        assert (tiny_set / r["url"]).is_file()
    manifest = json.loads((tiny_set / synthetic.MANIFEST).read_text())
    assert manifest["train_images"] == len(train) and manifest["test_images"] == len(test)
    assert not list(tiny_set.rglob("*.tmp*")), "temporary files left behind"


def test_train_counts_follow_the_requested_long_tail(tiny_set):
    _, train = read_csv(tiny_set / "train.csv")
    counts = collections.Counter(int(r["landmark_id"]) for r in train)
    assert [counts[i] for i in range(len(TINY.train_counts))] == list(TINY.train_counts)


@pytest.mark.parametrize("preset", ["tiny", "small", "default", "large"])
def test_presets_are_long_tailed(preset):
    counts = synthetic.parse_size(preset, None).train_counts
    assert list(counts) == sorted(counts, reverse=True)
    assert counts[-1] == 1, "some landmarks must have a single photo"
    assert counts[0] >= 8 * counts[-1], "a few landmarks must have many photos"
    assert sum(c <= 3 for c in counts) >= len(counts) / 3, "many landmarks must have few photos"


def test_landmarks_flag_rescales_a_preset():
    size = synthetic.parse_size("default", 10)
    assert len(size.train_counts) == 10 and size.distractors >= 1


@pytest.mark.parametrize("spec", ["huge", "3,0,1", "a,b", ""])
def test_bad_size_is_rejected(spec):
    with pytest.raises(ValueError):
        synthetic.parse_size(spec, None)


def test_test_split_has_held_out_views_and_unseen_distractors(tiny_set):
    _, train = read_csv(tiny_set / "train.csv")
    _, solution = read_csv(tiny_set / "test_solution.csv")
    _, test = read_csv(tiny_set / "test.csv")
    url = {r["id"]: r["url"] for r in train + test}
    known = [r for r in solution if r["landmark_id"] != ""]
    distractors = [r for r in solution if r["landmark_id"] == ""]
    assert {int(r["landmark_id"]) for r in known} == set(range(len(TINY.train_counts)))
    assert len(distractors) == TINY.distractors * TINY.distractor_views
    train_folders = {url[r["id"]].split("/")[1] for r in train}
    assert all(url[r["id"]].split("/")[1] not in train_folders for r in distractors)
    # A held-out view of a landmark is in its landmark's folder, yet a different photo from every train one.
    train_bytes = {(tiny_set / r["url"]).read_bytes() for r in train}
    for r in known:
        assert url[r["id"]].split("/")[1] in train_folders
        assert (tiny_set / url[r["id"]]).read_bytes() not in train_bytes


def test_images_decode_and_views_vary(tiny_set):
    _, train = read_csv(tiny_set / "train.csv")
    sizes = set()
    arrays = []
    for r in train:
        with Image.open(tiny_set / r["url"]) as im:
            assert im.format == "JPEG"
            im.load()
            assert im.mode == "RGB" and min(im.size) >= 150
            sizes.add(im.size)
            if r["landmark_id"] == "0":
                arrays.append(np.asarray(im.resize((32, 32)), np.float32))
    assert len(sizes) > len(train) / 2, "photos should come in varied sizes"
    # Views of one landmark differ clearly from each other (a different camera, light, occluders).
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.abs(arrays[i] - arrays[j]).mean() > 5


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.synthetic", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120)


def test_cli_writes_the_set_and_its_config(tmp_path):
    done = _cli(f"--output_dir={tmp_path}", "--size=2,1", "--seed=1", "--workers=1")
    assert done.returncode == 0, done.stderr
    _, train = read_csv(tmp_path / "train.csv")
    assert len(train) == 3
    assert "2 landmarks" in done.stderr
    config = json.loads((tmp_path / synthetic.CONFIG_FILE).read_text())
    assert config == {"output_dir": str(tmp_path), "seed": 1, "size": "2,1", "landmarks": None, "workers": 1}
    assert json.loads((tmp_path / synthetic.MANIFEST).read_text())["train_counts"] == [2, 1]


def test_cli_refuses_bad_flags_in_one_line_writing_nothing(tmp_path):
    out = tmp_path / "set"
    for flag, says in (("--size=2,x", "--size must be one of"), ("--landmarks=0", "--landmarks must be >= 1"),
                       ("--workers=-1", "--workers")):
        done = _cli(f"--output_dir={out}", flag)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert says in done.stderr
        assert not out.exists()
