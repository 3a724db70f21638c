"""Fixtures for the trainer tests."""

from __future__ import annotations

import pathlib

import pytest

from tests.unit.trainer.trainer_helpers import make_shards

MOBILENET_FILE = "weights/mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(scope="session")
def small_shards(tmp_path_factory) -> pathlib.Path:
    """6 landmarks x 6 train (+2 val) images of 64 px, 2 shards per split."""
    return make_shards(tmp_path_factory.mktemp("small") / "data", "--classes=6", "--per_class=6")


@pytest.fixture(scope="session")
def mobilenet_weights(shared_dir) -> pathlib.Path:
    """The offline ImageNet MobileNet (alpha 0.25, no top) weights file in ../shared."""
    path = shared_dir / MOBILENET_FILE
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
