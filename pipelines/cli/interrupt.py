"""Ctrl-C (SIGINT) and SIGTERM end a run at once, leaving what the next run resumes from.

Left to Python and Beam, a signal surfaces as a `KeyboardInterrupt` (or a `CancelledError`) in
whichever thread runs the main loop: Beam reports it as a failed bundle with a screen of
tracebacks, a fetch thread or a worker process may go on, and SIGTERM skips every `finally`, so
the run's private temp folder (`preprocess-run-*`) stays behind. Instead the handler prints one
line, ends the child processes (DirectRunner workers, a local Dask cluster), removes the run's
temp folder and exits with 128 + the signal's number. Nothing else needs saving: every shard is
published atomically and marked complete only afterwards (pipelines/graph/shards.py), so the next run
with the same flags skips the finished shards and redoes the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CHILD_GRACE_S = 3.0


def end_children() -> None:
    """Terminate this process's descendants, then kill those still alive after a short grace."""
    try:
        import psutil  # installed with distributed (the DaskRunner)
    except ImportError:
        return
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=_CHILD_GRACE_S)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _silence() -> None:
    """Send this process's further stdout/stderr output to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)


@contextlib.contextmanager
def stop_on_signals(prog: str, cleanup: Callable[[], None]) -> Iterator[None]:
    """While the body runs, SIGINT/SIGTERM print `<prog>: stopped by SIGINT: ...`, end the child
    processes, call `cleanup` and exit with 128 + the signal number. Only in the main thread
    (where Python runs signal handlers); elsewhere the body runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame) -> None:
        try:
            print(f"{prog}: stopped by {signal.Signals(signum).name}: finished shards are kept; "
                  "run the same command again to resume", file=sys.stderr, flush=True)
            _silence()  # Beam's threads report the vanishing workers with tracebacks: not news
            end_children()
            cleanup()
        finally:
            os._exit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
