"""Fixtures shared by every test package."""

from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """`../shared` beside the checkout; tests that need it skip, saying why, when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED} is absent: this test needs the shared landmark data (read in place)")
    return SHARED


@pytest.fixture(scope="session")
def dask_address():
    """A real local Dask cluster (scheduler + 2 worker processes on 127.0.0.1) for this pytest
    session; its address. Stopped when the session ends (see tests/tools/dask_cluster.py)."""
    from tests.tools.dask_cluster import dask_cluster

    with dask_cluster(workers=2) as address:
        yield address
