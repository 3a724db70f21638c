"""Issue 25 (round 2 of hostile inputs), the index / predict / evaluate side: non-finite and
out-of-range numbers, tampered index files with their sha256 fixed, strict evaluation CSVs, photo
folders that cannot be listed, and output folders that cannot be written. Each case is refused
with an `InputError` (one line on the command line) naming the flag or file, in this process; a
few command lines run as subprocesses to show the one line and no traceback."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from indexer import predict
from indexer.ranking import scoring
from indexer.store import index_dir
from indexer.store.annoy_index import IndexIntegrityError, sha256_file
from indexer.api import Recognizer
from indexer.build import BuildConfig, build
from indexer.evaluate import EvaluateConfig, evaluate
from indexer.embedding.image_folder import FolderError, list_images, write_folder_csv
from pipelines.cli.cli_errors import InputError, SettingsError
from tests.e2e.test_hostile_inputs import cli, one_error_line
from tests.unit.indexer.test_build_predict import build_config, predict_config

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def built(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "idx"
    build(build_config(tiny_export, reference_shards, out))
    return out


# --- 25.7 / 25.11: numbers, checked once (pipelines/cli/flag_checks.py) -----------------------------

@pytest.mark.parametrize("option, value, message", [
    ("penalty_weight", NAN, r"--penalty_weight=nan: must be a finite number >= 0"),
    ("penalty_weight", INF, r"--penalty_weight=inf: must be a finite number"),
    ("verify_weight", INF, r"--verify_weight=inf: must be a finite number"),
    ("aqe_alpha", NAN, r"--aqe_alpha=nan: must be a finite number"),
    ("verify_k", -1, r"--verify_k=-1: must be an integer >= 0"),
    ("verify_cap", 0, r"--verify_cap=0: must be an integer >= 1"),
    ("aqe_k", -3, r"--aqe_k=-3: must be an integer >= 0"),
])
def test_scoring_and_predict_refuse_non_finite_or_out_of_range_values(tmp_path, option, value, message):
    with pytest.raises(SettingsError, match=message):
        scoring.Scoring(**{option: value})
    with pytest.raises(SettingsError, match=message):  # the command line's config: the same check
        predict_config(tmp_path, tmp_path / "t.csv", tmp_path / "pred", **{option: value})


def test_api_refuses_nan_min_confidence_and_options(built):
    with pytest.raises(SettingsError, match="--min_confidence=nan: must be a finite number"):
        Recognizer.open(str(built), min_confidence=NAN)
    with pytest.raises(SettingsError, match="--aqe_alpha=nan"):
        Recognizer.open(str(built), rerank="aqe", aqe_alpha=NAN)
    assert Recognizer.open(str(built), min_confidence=0.5).min_confidence == 0.5


@pytest.mark.parametrize("option, value, message", [
    ("batch_size", 0, "--batch_size=0: must be an integer >= 1"),
    ("dba_alpha", NAN, "--dba_alpha=nan: must be a finite number >= 0"),
    ("num_shards", 0, "--num_shards=0: must be an integer >= 1"),
    ("tta", "bogus", "--tta=bogus: expected none, or one or more of flip, multiscale"),
])
def test_build_config_refuses_bad_numbers(tiny_export, reference_shards, tmp_path, option, value, message):
    with pytest.raises(SettingsError, match=message):
        build_config(tiny_export, reference_shards, tmp_path / "idx", **{option: value})


def test_more_annoy_shards_than_references_is_one_error(tiny_export, reference_shards, tmp_path):
    with pytest.raises(InputError, match=r"--num_shards=1000: more Annoy shards than the 36 references"):
        build(build_config(tiny_export, reference_shards, tmp_path / "idx", num_shards=1000))
    assert not (tmp_path / "idx" / index_dir.MANIFEST).exists()


# --- 25.7 / 25.11: tampered index files, sha256 fixed -------------------------------------------

def tampered(built, tmp_path, name: str, data: bytes, extra: bool = False) -> pathlib.Path:
    """A copy of the index whose file `name` holds `data`, with the manifest's size and sha256 for
    it fixed (`extra`: listed as a per-item array, like penalties.npy)."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / name).write_bytes(data)
    manifest = json.loads((copy / index_dir.MANIFEST).read_text())
    record = {"name": name, "n_items": manifest["n_items"], "size": len(data), "sha256": sha256_file(str(copy / name))}
    if extra:
        manifest["extras"] = [record]
    elif name == index_dir.ITEMS:
        manifest["items"] = record
    (copy / index_dir.MANIFEST).write_text(json.dumps(manifest))
    return copy


def npy_bytes(tmp_path, array, allow_pickle=False) -> bytes:
    path = tmp_path / "a.npy"
    np.save(path, array, allow_pickle=allow_pickle)
    return path.read_bytes()


def test_nan_penalties_and_object_arrays_are_refused(built, tmp_path):
    n = index_dir.read_manifest(str(built)).n_items
    good = tampered(built, tmp_path / "good", "penalties.npy", npy_bytes(tmp_path, np.full(n, 0.1, np.float32)),
                    extra=True)
    assert index_dir.open_index(str(good)).extras["penalties"].shape == (n,)
    nan = np.full(n, 0.1, np.float32)
    nan[3] = np.nan
    copy = tampered(built, tmp_path / "nan", "penalties.npy", npy_bytes(tmp_path, nan), extra=True)
    with pytest.raises(IndexIntegrityError, match=r"penalties.npy: 1 value\(s\) are NaN or infinite"):
        index_dir.open_index(str(copy))
    objects = np.array([0.1] * n, dtype=object)
    copy = tampered(built, tmp_path / "obj", "penalties.npy", npy_bytes(tmp_path, objects, True), extra=True)
    with pytest.raises(IndexIntegrityError, match=r"penalties.npy: not a plain .npy array"):
        index_dir.open_index(str(copy))


def test_items_csv_with_a_non_integer_label_is_refused(built, tmp_path):
    text = (built / index_dir.ITEMS).read_text().splitlines()
    fields = text[2].split(",")
    text[2] = ",".join(fields[:2] + ["seven"])
    copy = tampered(built, tmp_path, index_dir.ITEMS, ("\n".join(text) + "\n").encode())
    with pytest.raises(IndexIntegrityError, match=r"items.csv: invalid literal for int\(\) with base 10: 'seven'"):
        index_dir.open_index(str(copy))


@pytest.mark.parametrize("edit, message", [
    (lambda m: [1, 2, 3], "unreadable manifest: expected a JSON object, got list"),
    (lambda m: {**m, "tta": "bogus"}, r"unreadable manifest: tta 'bogus': expected one of \('none', 'flip', 'multiscale'"),
    (lambda m: {**m, "dimension": "16"}, "unreadable manifest: dimension '16' is not a int"),
    (lambda m: {**m, "items": {**m["items"], "name": "../items.csv"}}, "not a plain name inside the index folder"),
    (lambda m: {**m, "shards": []}, "needs at least one shard"),
])
def test_tampered_manifest_is_refused_in_one_line(built, tmp_path, edit, message):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / index_dir.MANIFEST).read_text())
    (copy / index_dir.MANIFEST).write_text(json.dumps(edit(manifest)))
    with pytest.raises(IndexIntegrityError, match=message):
        index_dir.open_index(str(copy))


# --- 25.8 / 25.11: evaluate reads its CSVs strictly --------------------------------------------

SOLUTION = "id,landmark_id\na,1\nb,2\n"


def write_bytes(path: pathlib.Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("submission, solution, message", [
    (b'id,landmarks\n"a,1 0.4\nb,2 0.5\n', SOLUTION.encode(), r"sub.csv: line 3: unexpected end of data"),
    (b'id,landmarks\n"a,1 0.4\nb",2 0.5\n', SOLUTION.encode(), r"sub.csv: row 2: a quoted field runs from line 2 to 3"),
    (b"id,landmarks\na,1 0.4\nb\xe9,2 0.5\n", SOLUTION.encode(), r"sub.csv: line 3: byte 0xe9 is not UTF-8"),
    (b"id,landmarks\na,1 0.4\n", b"id,landmark_id\na\xe9,1\nb,2\n", r"sol.csv: line 2: byte 0xe9 is not UTF-8"),
    (b"id,landmarks\na,1 0.4,9\n", SOLUTION.encode(), r"sub.csv: row 2 \(line 2\): 3 field\(s\), the header has 2"),
])
def test_evaluate_refuses_swallowing_quotes_bad_bytes_and_ragged_rows(tmp_path, submission, solution, message):
    config = EvaluateConfig(write_bytes(tmp_path / "sub.csv", submission), write_bytes(tmp_path / "sol.csv", solution),
                            None, str(tmp_path / "out"), "sum")
    with pytest.raises(InputError, match=message):
        evaluate(config)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_evaluate_still_scores_a_well_formed_pair(tmp_path):
    config = EvaluateConfig(write_bytes(tmp_path / "sub.csv", b'id,landmarks\n"a","1 0.9"\nb,\n'),
                            write_bytes(tmp_path / "sol.csv", b"\xef\xbb\xbfid,landmark_id\na,1\nb,2\n"), None,
                            str(tmp_path / "out"), "sum")
    assert evaluate(config)["gap"] == pytest.approx(0.5)


# --- 25.11: photo folders and output folders ----------------------------------------------------

def test_photo_folders_that_cannot_be_listed_are_refused(tmp_path):
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "a.jpg").write_bytes(b"x")
    (tmp_path / "dup" / "a.png").write_bytes(b"x")
    with pytest.raises(FolderError, match=r"two photos would share the id 'a': .*a.jpg and .*a.png"):
        list_images(str(tmp_path / "dup"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match="holds no photo"):
        write_folder_csv(str(tmp_path / "empty"), str(tmp_path / "images.csv"))
    raw = os.fsencode(tmp_path / "odd")
    os.mkdir(raw)
    with open(os.path.join(raw, b"caf\xff.jpg"), "wb") as f:
        f.write(b"x")
    with pytest.raises(FolderError, match=r"caf\\xff.jpg'?: the file name is not UTF-8"):
        write_folder_csv(str(tmp_path / "odd"), str(tmp_path / "images.csv"))
    assert not (tmp_path / "images.csv").exists()


def unwritable(tmp_path: pathlib.Path) -> str:
    """A folder this process cannot create files in (root ignores permission bits: /proc then)."""
    if os.geteuid() == 0:
        return "/proc/self"
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    return str(path)


def test_output_folders_that_are_files_or_read_only_are_refused(built, tiny_export, reference_shards, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    sub = write_bytes(tmp_path / "sub.csv", b"id,landmarks\na,1 0.9\n")
    sol = write_bytes(tmp_path / "sol.csv", SOLUTION.encode())
    for out, message in ((str(a_file), "exists and is not a folder"), (unwritable(tmp_path), "cannot write into it")):
        with pytest.raises(SettingsError, match=f"--output_dir={out}: {message}"):
            build(build_config(tiny_export, reference_shards, out))
        with pytest.raises(SettingsError, match=f"--output_dir={out}: {message}"):
            predict.predict(predict_config(built, sub, out))
        with pytest.raises(SettingsError, match=f"--output_dir={out}: {message}"):
            evaluate(EvaluateConfig(sub, sol, None, out, "sum"))
    assert a_file.read_text() == "not a folder"


def test_dask_scheduler_that_cannot_be_reached_is_one_error(tiny_export, reference_shards, tmp_path):
    import dask
    import distributed  # noqa: F401 - its defaults first: set() would drop the whole section on exit

    from indexer.embedding.beam_embed import embed_with_beam
    from indexer.embedding.embed import list_shards

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(InputError, match="the Dask scheduler cannot be reached"):
            embed_with_beam(list_shards(str(reference_shards), ["train"]), str(tiny_export), str(tmp_path / "emb"), 8,
                            ["--runner=dask"], dask_address="tcp://127.0.0.1:1")


# --- the command lines: one line, no traceback -----------------------------------------------------

def test_command_lines_answer_bad_values_in_one_line(built, tmp_path, repo_root):
    sub = write_bytes(tmp_path / "sub.csv", b'id,landmarks\n"a,1 0.4\nb,2 0.5\n')
    sol = write_bytes(tmp_path / "sol.csv", SOLUTION.encode())
    line = one_error_line(cli(repo_root, "indexer.evaluate", f"--submission={sub}", f"--solution={sol}"),
                          "indexer.evaluate")
    assert "sub.csv: line 3: unexpected end of data" in line
    done = cli(repo_root, "indexer.predict", f"--index_dir={built}", f"--test_csv={sol}",
               f"--output_dir={tmp_path / 'pred'}", "--verify_k=-1")
    assert "--verify_k=-1: must be an integer >= 0" in one_error_line(done, "indexer.predict")
    done = cli(repo_root, "indexer.predict", f"--index_dir={built}", f"--test_csv={sol}",
               f"--output_dir={tmp_path / 'pred'}", "--penalty_weight=nan")
    assert "--penalty_weight=nan: must be a finite number >= 0" in one_error_line(done, "indexer.predict")
