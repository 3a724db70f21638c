"""Issue 25, MEDIUM 9: Ctrl-C (SIGINT, sent to the whole process group as a terminal does) and
SIGTERM stop a preprocess run at once with one line, leave no `preprocess-run-*` temp folder, and
the same command then resumes: finished shards are skipped, the rest is done, every row is
accounted for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.cli import run_tempdir
from tests.pipeline import helpers

WAIT_S = 120  # liveness bounds only: the run is stopped long before


@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_signal_stops_the_run_and_the_same_command_resumes(tmp_path, sig, group):
    with helpers.FaultServer(stall_s=0.4) as srv:
        rows = [f"r{i:02d},{srv.url('slow', str(i))},{i % 6}" for i in range(24)]
        (tmp_path / "in.csv").write_text("id,url,landmark_id\n" + "\n".join(rows) + "\n")
        out, tmp = tmp_path / "out", tmp_path / "tmp"
        tmp.mkdir()
        cmd = [sys.executable, "-m", "pipelines.preprocess", f"--csv={tmp_path / 'in.csv'}", f"--output_dir={out}",
               "--num_shards=6", "--val_fraction=0", "--fetch_threads=1", "--direct_running_mode=in_memory"]
        env = {**os.environ, "TMPDIR": str(tmp)}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            started = time.monotonic()
            while not list((out / "_parts").glob("*.json")) and time.monotonic() - started < WAIT_S:
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be interrupted"
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 128 + sig, stderr[-2000:]
        assert f"stopped by {sig.name}" in stderr and "Traceback" not in stderr
        assert not [n for n in os.listdir(tmp) if n.startswith(run_tempdir.PREFIX)]
        assert not (out / "stats.json").exists()
        finished = len(list((out / "_parts").glob("*.json")))
        assert 1 <= finished < 6
        srv.stall_s = 0.0
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{finished} already done" in again.stdout
    assert "written         24" in again.stdout and "every row accounted for: True" in again.stdout
