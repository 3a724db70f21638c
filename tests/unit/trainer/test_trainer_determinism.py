"""`--deterministic`: the same tiny run twice gives the same losses and the same exported weights."""

from __future__ import annotations

import json

import numpy as np

from tests.unit.trainer.trainer_helpers import run_train
from trainer import contract


def test_two_deterministic_runs_give_identical_weights_and_history(tmp_path, small_shards):
    import keras

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_train(small_shards, out, "--deterministic", "--epochs=1", "--steps_per_epoch=3", "--seed=7",
                  "--learning_rate=0.01")
        rows = json.loads((out / "history.json").read_text())
        weights = keras.models.load_model(out / contract.EXPORT_DIR / contract.KERAS_FILE).get_weights()
        runs.append(([(r["epoch"], r.get("loss"), r.get("top1")) for r in rows], weights))
    (history_a, weights_a), (history_b, weights_b) = runs
    assert history_a == history_b and history_a[-1][1] is not None
    assert len(weights_a) == len(weights_b)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["deterministic"] is True
