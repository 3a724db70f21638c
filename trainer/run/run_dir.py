"""A rerun into an existing output folder: resume it, refuse it, or (`--overwrite`) start it clean.

A rerun resumes from the newest checkpoint. That is only right when the checkpoints belong to the
same model and objective: with another `--embedding_dim`, backbone, image size, loss or (ArcFace)
number of train landmarks every
checkpoint fails to restore, and training would "start from scratch" inside the old run (old
checkpoints replaced, history.json mixing two runs, an export claiming the old epoch count). So
the saved config.json is compared first: a change to a field in `SHAPE_FIELDS` is refused with one
line naming them, unless `--overwrite`, which removes the old run's checkpoints, history, logs and
export first. Other fields (`--epochs` to train on, `--gpus`, `--cpu_replicas`, `--jit_compile`, paths, ...)
change freely. `--mixed_precision` is compared as resolved for the devices (auto -> on/off).
"""

from __future__ import annotations

import json
import os
from typing import List

from trainer.config import CONFIG_FILE, Config, ConfigError

# What the checkpoints and the history depend on: the model's variables and the objective.
# `classes`: the train landmarks of --loss=arcface, the rows of the checkpointed class centres.
SHAPE_FIELDS = ("backbone", "alpha", "image_size", "embedding_dim", "pooling", "gem_p", "freeze", "loss", "margin",
                "mixed_precision", "arcface_subcenters", "classes")
# What a run writes into its output folder (loop.py, export.py), removed by --overwrite.
RUN_OUTPUTS = ("checkpoints", "logs", "history.json", "export")


def changed_fields(output_dir: str, cfg: Config) -> List[str]:
    """`name saved -> new` for each shape field that differs from the folder's config.json (none
    when there is no config.json: a new run)."""
    import tensorflow as tf  # gfile: local or gs://

    path = os.path.join(output_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        try:
            saved = json.load(f)
        except ValueError as err:
            raise ConfigError(f"{path}: unreadable ({err}); use another --output_dir or --overwrite") from None
    new = json.loads(cfg.to_json())
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: not a JSON object; use another --output_dir or --overwrite")
    return [f"{_shown(name)} {_setting(name, saved[name])} -> {new[name]}" for name in SHAPE_FIELDS
            if name in saved and _setting(name, saved[name]) != new[name]]


def _setting(name: str, value):
    """A saved value as today's config writes it (runs before `--mixed_precision=auto` saved a bool)."""
    if name == "mixed_precision" and isinstance(value, bool):
        return "on" if value else "off"
    return value


def _shown(name: str) -> str:
    """A shape field as the user knows it: its flag, or what the data decides."""
    return "train landmarks (ArcFace classes)" if name == "classes" else f"--{name}"


def check_rerun(output_dir: str, cfg: Config, overwrite: bool) -> None:
    """Raise ConfigError when `output_dir` holds a run of another shape and `overwrite` is off."""
    changes = [] if overwrite else changed_fields(output_dir, cfg)
    if changes:
        raise ConfigError(f"{os.path.join(output_dir, CONFIG_FILE)}: this folder holds a run with other settings "
                          f"({', '.join(changes)}); its checkpoints cannot continue. Use another --output_dir, "
                          "or --overwrite to delete that run and start over")


def clear(output_dir: str) -> List[str]:
    """Remove a previous run's outputs (and other workers' checkpoint folders); the paths removed."""
    import tensorflow as tf

    removed = []
    paths = [os.path.join(output_dir, name) for name in RUN_OUTPUTS]
    paths += tf.io.gfile.glob(os.path.join(output_dir, ".worker-*"))
    for path in paths:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        else:
            continue
        removed.append(path)
    return removed
