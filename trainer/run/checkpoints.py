"""Epoch checkpoints of the training state, and resuming from the newest one that reads.

The state is the model's and optimizer's variables plus the number of epochs done. A checkpoint is
written at the end of every epoch by `tf.train.CheckpointManager`, which publishes it in its state
file only once its files are complete; a run killed at any point therefore loses at most the epoch
in progress. On start, checkpoints are tried newest first: one that fails to read is reported and
the previous one is used. When none reads the run is refused rather than started over on top of
them (which would delete and replace them); `--overwrite` removes them first.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import tensorflow as tf

from pipelines.cli.cli_errors import InputError


class UnreadableRunError(InputError):
    """Checkpoints exist but none restores: training would start over and replace them."""


class TrainingState:
    """Model + optimizer + epoch counter, saved to and restored from `directory`."""

    def __init__(self, directory: str, model: keras.Model, optimizer: keras.optimizers.Optimizer, keep: int,
                 restore_from: Optional[str] = None, head: Optional[keras.layers.Layer] = None):
        """Saves go to `directory`; restores read `restore_from` (default: the same). Under
        multi-worker training every worker saves (a collective) into its own directory, but all of
        them restore the chief's checkpoints, so they resume from the same epoch. `head`: a
        training-only layer (the ArcFace class centres), saved and restored with the model."""
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        extra = {"head": head} if head is not None else {}
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch, **extra)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=keep)
        self._source = (self._manager if restore_from in (None, directory)
                        else tf.train.CheckpointManager(self._checkpoint, restore_from, max_to_keep=keep))

    def restore(self) -> Optional[str]:
        """Restore the newest readable checkpoint; its path, or None when there is none (a new
        run). When checkpoints exist but none can be read (all damaged, or written by a model of
        another shape), UnreadableRunError: starting over would replace them, so only
        `--overwrite` (which removes them first) may do that."""
        reasons = []
        for path in reversed(self._source.checkpoints):
            try:
                self._checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as err:  # noqa: BLE001 - the reader raises OpError, IndexError, ValueError...
                detail = str(err).splitlines()[0] if str(err) else ""
                reasons.append(f"{os.path.basename(path)}: {type(err).__name__}: {detail}")
                print(f"WARNING: checkpoint {path} is unreadable ({type(err).__name__}: {detail}); "
                      "falling back to the previous one", flush=True)
                continue
            return path
        if self._source.checkpoints:
            raise UnreadableRunError(
                f"{self._source.directory}: none of its {len(reasons)} checkpoint(s) can be read ({reasons[0][:300]}); "
                "they belong to another run or are damaged, and starting over would replace them. Use another "
                "--output_dir, or --overwrite to delete that run and start over")
        return None

    def save(self, epochs_done: int) -> str:
        self.epoch.assign(epochs_done)
        return self._manager.save(checkpoint_number=epochs_done)
