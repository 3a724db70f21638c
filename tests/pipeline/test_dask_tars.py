"""`--tars` with `--tar_md5` on Beam's DaskRunner: each tar is read (and hashed) once, as on the
DirectRunner, and the output is the DirectRunner's byte for byte.

The cluster is a `distributed.LocalCluster` inside this process (worker threads, not processes),
so the counting wrapper put on `tar_source.index_tar` sees every read the workers make. Its
workers talk TCP, not `inproc`: over `inproc` the tasks share the DaskRunner's per-ParDo output
receivers unserialized, and every task's output piles up in them (wrong rows, on any code).
Beam 2.77's DaskRunner recomputes a side input's whole upstream in every task that reads it:
with the tar lookup's former `AsList` / `AsDict` side inputs this test counted each tar twice."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from pipelines import preprocess
from pipelines.sources import tar_source
from tests.pipeline import helpers
from tests.pipeline.test_dask_runner import outputs
from tests.pipeline.test_layouts import make_tar

pytest.importorskip("distributed", reason="apache-beam[dask] is not installed")

TARS = 3
PER_TAR = 4
FLAGS = ["--layout=gldv2_clean", "--rows_per_shard=4", "--val_fraction=0.25", "--image_size=32", "--fetch_retries=0"]


def make_input(root):
    """3 tars of 4 photos, a whole-tar md5 list for them, a 4th tar that is listed but missing,
    and a train_clean.csv naming every photo plus one id in no tar."""
    ids = [f"{n:04x}cafe{n:08x}" for n in range(1, TARS * PER_TAR + 1)]
    tars, md5_lines = [], []
    for t in range(TARS):
        path = root / f"images_{t:03d}.tar"
        chunk = ids[t * PER_TAR:(t + 1) * PER_TAR]
        make_tar(path, [(f"{i[0]}/{i[1]}/{i[2]}/{i}.jpg", helpers.jpeg(64, 48, seed=i)) for i in chunk])
        tars.append(str(path))
        md5_lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.name}")
    tars.append(str(root / "images_999.tar"))  # missing: its name is in every not_found detail
    (root / "md5.txt").write_text("\n".join(md5_lines) + "\n")
    (root / "train_clean.csv").write_text(
        "landmark_id,images\n" + "".join(f"{n % 3},{i}\n" for n, i in enumerate(ids)) + "1,0000feed00000000\n")
    return [f"--csv={root / 'train_clean.csv'}", f"--tars={','.join(tars)}", f"--tar_md5={root / 'md5.txt'}", *FLAGS]


@pytest.fixture
def tar_reads(monkeypatch):
    """[(tar name, hashed?)] of every `tar_source.index_tar` call in this process."""
    calls, lock, real = [], threading.Lock(), tar_source.index_tar

    def counting(path, expected_md5=None):
        with lock:
            calls.append((os.path.basename(path), expected_md5 is not None))
        return real(path, expected_md5)

    monkeypatch.setattr(tar_source, "index_tar", counting)
    return calls


def test_dask_reads_and_hashes_each_tar_once(tmp_path, tar_reads):
    from distributed import LocalCluster

    argv = make_input(tmp_path)
    once = sorted([(f"images_{t:03d}.tar", True) for t in range(TARS)] + [("images_999.tar", False)])
    direct = preprocess.run([*argv, f"--output_dir={tmp_path / 'direct'}", "--direct_running_mode=in_memory"])
    assert sorted(tar_reads) == once
    assert direct["written"] == TARS * PER_TAR and direct["failed_by_reason"] == {"not_found": 1}

    tar_reads.clear()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        stats = preprocess.run([*argv, f"--output_dir={tmp_path / 'dask'}", "--runner=dask",
                                f"--dask_address={cluster.scheduler_address}"])

    assert sorted(tar_reads) == once  # each tar read, and hashed, once
    assert stats == direct
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "direct")
