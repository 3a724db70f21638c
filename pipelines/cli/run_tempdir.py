"""A private temporary folder for one run, removed when the run ends, however it ends.

Beam's DirectRunner creates folders in the system temp directory on every run (`beam-temp*` for
its job server, `beam-pipeline-temp*`, `beam-requirements-cache`, `tmp*` for staged artifacts)
and leaves most of them behind: 83 after an afternoon of runs. Rather than chase each one, the
run points the process's temp directory (`tempfile.tempdir`, and `TMPDIR` for the worker
processes it starts) at a fresh folder inside the usual one, and removes that folder at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

PREFIX = "preprocess-run-"
_active = []  # the folders of the runs under way in this process


def remove_active() -> None:
    """Remove the temp folders of the runs under way (for a signal handler that exits at once)."""
    for path in list(_active):
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_tempdir() -> Iterator[str]:
    """Run the body with every temp file of this process and its children under a fresh folder."""
    path = tempfile.mkdtemp(prefix=PREFIX)
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = path
    _active.append(path)
    try:
        yield path
    finally:
        _active.remove(path)
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)
