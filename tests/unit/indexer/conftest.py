"""Fixtures for indexer tests (made by indexer_helpers.py)."""

from __future__ import annotations

import pathlib

import pytest

from tests.unit.indexer.indexer_helpers import make_export, make_shards


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> pathlib.Path:
    return make_export(tmp_path_factory.mktemp("export") / "export")


@pytest.fixture(scope="session")
def reference_shards(tmp_path_factory) -> pathlib.Path:
    """6 classes x (6 train + 2 val) images of 32x32, in 2 shards per split."""
    return make_shards(tmp_path_factory.mktemp("records"), classes=6, per_class=6, val_per_class=2, size=32,
                       shards=2, seed=0)
