"""A real local Dask cluster for tests: one `dask scheduler` and `dask worker --nworkers N`.

    with dask_cluster(workers=2) as address:        # "tcp://127.0.0.1:PORT"
        run_pipeline(["--runner=dask", f"--dask_address={address}", ...])

Both run as subprocesses of this venv's Python, on 127.0.0.1, on ports the OS picks (the
scheduler writes its address to a scheduler file; nothing is guessed, so parallel test runs
cannot collide). Workers get this checkout first on `PYTHONPATH`, so they import the code under
test, not an installed copy. The context waits until every worker process has registered, and
always stops the whole cluster on exit: its own process groups are terminated (then killed), and
each process also gets SIGTERM from the kernel if the test process dies first (`PR_SET_PDEATHSIG`),
while workers exit by themselves once their scheduler is gone (`--death-timeout`). So no run
leaves orphans.

Worker memory management is off (`--memory-limit=0`): on a shared CI machine a memory-based
pause or restart would make results depend on the neighbours' load.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterator, List, Optional

REPO = pathlib.Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1


class ClusterStartError(RuntimeError):
    """The scheduler or a worker did not come up; the message carries their log tails."""


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it exits (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux/glibc: the explicit stop in `dask_cluster` still applies
        pass


def _env() -> dict:
    env = dict(os.environ)
    paths = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _start(args: List[str], log: pathlib.Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the nanny's worker processes stop with it
            preexec_fn=_die_with_parent,
        )


def _stop(proc: Optional[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it is still there after `grace_s`."""
    if proc is None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # the leader may be gone while a child of its group lingers
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: pathlib.Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _wait_for_address(scheduler_file: pathlib.Path, proc: subprocess.Popen, deadline: float) -> str:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterStartError(f"dask scheduler exited with {proc.returncode}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise ClusterStartError("dask scheduler wrote no address in time")


def _wait_for_workers(address: str, workers: int, proc: subprocess.Popen, deadline: float) -> None:
    from distributed import Client  # imported here: only a test that starts a cluster pays for it

    with Client(address, timeout=max(1.0, deadline - time.monotonic())) as client:
        while len(client.scheduler_info(n_workers=-1)["workers"]) < workers:
            if proc.poll() is not None:
                raise ClusterStartError(f"dask worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise ClusterStartError(f"only {len(client.scheduler_info(n_workers=-1)['workers'])} of {workers} "
                                        "dask workers registered in time")
            time.sleep(0.2)


@contextlib.contextmanager
def dask_cluster(workers: int = 2, threads: int = 1, start_timeout_s: float = 90.0) -> Iterator[str]:
    """Start a scheduler and `workers` worker processes of `threads` threads on 127.0.0.1; yield
    the scheduler address once all workers are registered; stop everything on exit."""
    with tempfile.TemporaryDirectory(prefix="dask-cluster-") as tmp:
        tmp_dir = pathlib.Path(tmp)
        scheduler_file = tmp_dir / "scheduler.json"
        scheduler = worker = None
        deadline = time.monotonic() + start_timeout_s
        try:
            scheduler = _start(
                ["distributed.cli.dask_scheduler", "--host=127.0.0.1", "--port=0", "--no-dashboard",
                 f"--scheduler-file={scheduler_file}"],
                tmp_dir / "scheduler.log",
            )
            address = _wait_for_address(scheduler_file, scheduler, deadline)
            worker = _start(
                ["distributed.cli.dask_worker", address, "--host=127.0.0.1", f"--nworkers={workers}",
                 f"--nthreads={threads}", "--memory-limit=0", "--no-dashboard", "--death-timeout=30",
                 f"--local-directory={tmp_dir / 'work'}"],
                tmp_dir / "worker.log",
            )
            _wait_for_workers(address, workers, worker, deadline)
        except Exception as e:
            _stop(worker)
            _stop(scheduler)
            raise ClusterStartError(
                f"{e}\n--- scheduler log ---\n{_tail(tmp_dir / 'scheduler.log')}"
                f"\n--- worker log ---\n{_tail(tmp_dir / 'worker.log')}"
            ) from e
        try:
            yield address
        finally:
            _stop(worker)
            _stop(scheduler)
