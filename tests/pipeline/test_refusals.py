"""Issue 25 (preprocessing side): inputs and flags refused up front with one line, another input
never deleting a finished run, a CSV line of any length read in bounded memory.
docs/errors.md lists each case and what it gets."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from pipelines import preprocess
from pipelines.cli import output_guard
from pipelines.sources import csv_input
from pipelines.cli.cli_errors import InputError
from tests.pipeline import helpers
from tests.pipeline.test_hostile_inputs import FAST, failures_of, record_ids


def _inputs(tmp_path, n: int = 6) -> str:
    for i in range(n):
        (tmp_path / f"{i}.jpg").write_bytes(helpers.jpeg(80, 80, seed=str(i)))
    (tmp_path / "train.csv").write_text("id,url,landmark_id\n" + "".join(f"t{i},{i}.jpg,{i % 3}\n" for i in range(n)))
    return str(tmp_path / "train.csv")


def _files(out) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


# --- HIGH 2: another train CSV into the same folder is refused unless --overwrite ---


def test_other_train_csv_into_a_finished_folder_is_refused_and_nothing_is_touched(tmp_path):
    train = _inputs(tmp_path)
    (tmp_path / "subset.csv").write_text("id,url,landmark_id\nt0,0.jpg,0\nt1,1.jpg,1\n")
    out = tmp_path / "out"
    common = [f"--output_dir={out}", "--val_fraction=0", "--rows_per_shard=2", *FAST]
    preprocess.run([f"--csv={train}", *common])
    before = _files(out)
    with pytest.raises(InputError) as refused:
        preprocess.run([f"--csv={tmp_path / 'subset.csv'}", *common])
    message = str(refused.value)
    assert "train.csv" in message and "--overwrite" in message and "\n" not in message
    assert _files(out) == before
    # The same CSV grown in place is another input too (a resume of the same file is not).
    with open(train, "a") as f:
        f.write("t9,0.jpg,2\n")
    with pytest.raises(InputError, match="changed since"):
        preprocess.run([f"--csv={train}", *common])
    assert _files(out) == before
    stats = preprocess.run([f"--csv={tmp_path / 'subset.csv'}", "--overwrite", *common])
    assert stats["written"] == 2 and record_ids(out) == ["t0", "t1"]


def test_same_input_and_added_inputs_go_on(tmp_path):
    train = _inputs(tmp_path)
    (tmp_path / "more.csv").write_text("id,url,landmark_id\nm0,0.jpg,7\n")
    out = tmp_path / "out"
    common = [f"--output_dir={out}", "--val_fraction=0", *FAST]
    preprocess.run([f"--csv={train}", *common])
    assert preprocess.run([f"--csv={train}", *common])["written"] == 6  # a resume
    both = preprocess.run([f"--csv={train},{tmp_path / 'more.csv'}", *common])
    assert both["written"] == 7
    assert [r["path"] for r in output_guard.recorded_inputs(str(out))] == [train, str(tmp_path / "more.csv")]


# --- HIGH 3: a line of any length is one bad_row; memory stays bounded ---


def test_nul_filled_csv_without_newline_is_one_bad_row_with_a_short_prefix(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(helpers.jpeg(80, 80))
    path = tmp_path / "z.csv"
    with open(path, "wb") as f:
        f.write(b"id,url,landmark_id\nok,a.jpg,1\n")
        f.truncate(3 << 20)  # a preallocated partial download: NUL bytes, no newline
    monkeypatch.setattr(csv_input, "MAX_LINE_CHARS", 1 << 20)
    stats = preprocess.run([f"--csv={path}", f"--output_dir={tmp_path / 'out'}", "--val_fraction=0", *FAST])
    assert stats["written"] == 1 and stats["failed_by_reason"] == {"bad_row": 1} and stats["accounted_for"]
    ((image_id, (reason, detail)),) = failures_of(tmp_path / "out").items()
    assert detail.startswith("line 3: ") and "over the limit of 1048576" in detail
    assert image_id.startswith("\\x00") and len(image_id) <= csv_input.KEPT_PREFIX_CHARS
    assert os.path.getsize(tmp_path / "out" / "failures.csv") < 1000


def test_long_lines_between_good_ones_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_input, "MAX_LINE_CHARS", 50)
    (tmp_path / "in.csv").write_text(  # an open quote is never joined with a long line after it
        "id,url\nfirst,a.jpg\nlong," + "u" * 200 + '\n"q1","unclosed.jpg\nmid,' + "v" * 60 + "\nlast,b.jpg\n"
    )
    items = list(csv_input.iter_csv(0, str(tmp_path / "in.csv"), "test", 0.0))
    assert [i.image_id for i in items] == ["first", "long", "q1", "mid", "last"]
    assert [type(i).__name__ for i in items] == ["Row", "Failure", "Failure", "Failure", "Row"]
    assert "line 3: 206 characters" in items[1].detail and len(items[1].url) < 100
    assert "unbalanced quote" in items[2].detail and "line 5: 65 characters" in items[3].detail
    assert items[4].order == (0, 6)


def test_overlong_header_is_refused(tmp_path):
    path = tmp_path / "z.csv"
    with open(path, "wb") as f:
        f.truncate(csv_input.MAX_LINE_CHARS + 10)
    with pytest.raises(InputError, match="header line is longer"):
        preprocess.run([f"--csv={path}", f"--output_dir={tmp_path / 'out'}", *FAST])


# --- HIGH 5: FIFOs and devices named as inputs are refused before they are opened ---


def _refused_without_blocking(argv) -> str:
    """The InputError message of `preprocess.run(argv)`; fails if the call blocks (a FIFO open)."""
    result = {}

    def attempt():
        try:
            preprocess.run(argv)
        except InputError as e:
            result["message"] = str(e)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["other"] = repr(e)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(60)  # a liveness bound: the old code blocked in open() forever
    assert not t.is_alive(), f"preprocess blocked on {argv}"
    assert "message" in result, result
    return result["message"]


def test_fifo_or_device_as_csv_or_tar_is_refused(tmp_path):
    csv_path = _inputs(tmp_path, 1)
    os.mkfifo(tmp_path / "f.csv")
    os.mkfifo(tmp_path / "f.tar")
    out = f"--output_dir={tmp_path / 'out'}"
    assert "named pipe" in _refused_without_blocking([f"--csv={tmp_path / 'f.csv'}", out, *FAST])
    assert "character device" in _refused_without_blocking(["--csv=/dev/zero", out, *FAST])
    message = _refused_without_blocking([f"--csv={csv_path}", f"--tars={tmp_path / 'f.tar'}", out, *FAST])
    assert "f.tar" in message and "--tars" in message
    assert not (tmp_path / "out").exists()


# --- MEDIUM 6 / 11 and LOW: flags and paths refused with one line ---


@pytest.mark.parametrize("case, expected", [
    ("typo", "unknown flag(s) --image_sise=64"),
    ("dask", "--dask_address=tcp://127.0.0.1:1: no Dask scheduler answers there"),
    ("md5_missing", "missing.md5: does not exist (--tar_md5)"),
    ("md5_malformed", "bad.md5:1: expected '<md5>  <name>'"),
    ("md5_not_utf8", "latin.md5: not UTF-8 text"),
    ("out_is_file", "afile: exists and is not a directory (--output_dir)"),
    ("out_unwritable", "cannot write there (--output_dir)"),
    ("images_root", "nowhere: no such folder (--images_root)"),
    ("derived_root", "train: no such folder (--images_root, by default beside"),
])
def test_bad_flags_and_paths_are_refused_before_any_work(tmp_path, case, expected):
    csv_path = _inputs(tmp_path, 1)
    (tmp_path / "x.tar").write_bytes(b"")
    (tmp_path / "bad.md5").write_text("not an md5 line\n")
    (tmp_path / "latin.md5").write_bytes(b"d41d8cd98f00b204e9800998ecf8427e  caf\xe9.tar\n")
    (tmp_path / "afile").write_text("")
    tars = f"--tars={tmp_path / 'x.tar'}"
    extra = {
        "typo": ["--image_sise=64"],
        "dask": ["--runner=dask", "--dask_address=tcp://127.0.0.1:1"],
        "md5_missing": [tars, f"--tar_md5={tmp_path / 'missing.md5'}"],
        "md5_malformed": [tars, f"--tar_md5={tmp_path / 'bad.md5'}"],
        "md5_not_utf8": [tars, f"--tar_md5={tmp_path / 'latin.md5'}"],
        "out_is_file": [f"--output_dir={tmp_path / 'afile'}"],
        "out_unwritable": ["--output_dir=/sys"],  # sysfs: no process may create a file there, not even root
        "images_root": ["--layout=kaggle", f"--images_root={tmp_path / 'nowhere'}"],
        "derived_root": ["--layout=kaggle"],  # the CSV's folder has no train/ tree
    }[case]
    argv = [f"--csv={csv_path}", f"--output_dir={tmp_path / 'out'}", *FAST, *extra]
    with pytest.raises(InputError) as refused:
        preprocess.run(argv)
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_the_command_line_says_it_in_one_line_and_exits_1(tmp_path):
    csv_path = _inputs(tmp_path, 1)
    for module, args in (("pipelines.preprocess", [f"--csv={csv_path}", "--image_sise=64"]),
                         ("pipelines.synthetic", [])):
        proc = subprocess.run([sys.executable, "-m", module, f"--output_dir={csv_path}", *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(f"{module}: error: ")
        assert "Traceback" not in proc.stderr
