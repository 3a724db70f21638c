"""Flags -> frozen Config: presets, explicit overrides, and clear errors."""

from __future__ import annotations

import json

import pytest
from absl import flags

from trainer import config


def _parse(*argv: str) -> config.Config:
    fv = flags.FlagValues()
    config.define_flags(fv)
    fv(["train", "--data_dir=d", "--output_dir=o", *argv])
    return config.from_flags(fv)


def test_preset_values_yield_to_explicit_flags():
    cfg = _parse("--preset=tiny", "--image_size=128", "--batch=8,4", "--recall_k=10,1")
    assert (cfg.backbone, cfg.alpha, cfg.weights) == ("mobilenet", 0.25, "none")  # from the preset
    assert (cfg.image_size, cfg.batch_p, cfg.batch_k, cfg.recall_k) == (128, 8, 4, (1, 10))
    assert _parse().backbone == "inception_v3" and _parse().freeze == "auto"
    assert json.loads(cfg.to_json())["image_size"] == 128
    with pytest.raises(Exception):
        cfg.image_size = 1  # frozen


@pytest.mark.parametrize("argv, message", [
    (("--batch=5,4", "--cpu_replicas=2"), "P must split evenly"),
    (("--batch=8",), "expected P,K"),
    (("--batch=8,1",), "K needs 2"),
    (("--backbone=resnet50", "--alpha=0.5"), "only MobileNet"),
    (("--freeze=1.5",), "within \\[0, 1\\]"),
    (("--arcface_margin=wide",), "expected radians"),
    (("--arcface_margin=nan",), "finite number"),
    (("--arcface_margin=2",), "within \\[0, 1.5\\)"),
])
def test_bad_values_are_clear_errors(argv, message):
    with pytest.raises(config.ConfigError, match=message):
        _parse(*argv)
