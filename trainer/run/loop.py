"""The training loop: distributed triplet steps, per-epoch validation, logging and checkpoints.

Validation needs val shards; records without them (`--val_fraction=0`) train and export with one
log line saying validation is skipped, and history rows that hold only loss and learning rate.

A custom loop rather than `Model.fit`, so one code path serves MirroredStrategy and
MultiWorkerMirroredStrategy alike (Keras 3 `fit` is reported broken under the latter) and the epoch
checkpoints are ours to validate and fall back from. Console: a Keras progress bar per epoch, then
the validation line. TensorBoard: `logs/` (loss, learning rate, top1, recall@k per epoch).
`history.json` keeps the same per-epoch figures; epoch 0 is the network before any training.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainer.input import data, records_info
from trainer.network import heads
from trainer.run import checkpoints, distribute, retrieval
from trainer.config import Config, ConfigError
from trainer.network.model import build_embedding_model

HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"


def learning_rate_schedule(cfg: Config, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 0 to `--learning_rate` over `--warmup_steps`, then cosine decay to 1%."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else cfg.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.01,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def train_step_fn(strategy: tf.distribute.Strategy, model: keras.Model, optimizer, cfg: Config,
                  head: Optional[heads.ArcFaceHead] = None, jit: bool = False) -> Callable:
    """A traced function: one optimisation step on the next batch of a distributed iterator; returns
    the loss averaged over replicas. `head`: the training-only class head of --loss=arcface. `jit`:
    the forward and backward pass are XLA-compiled (the input and the cross-replica gradient update
    stay outside, as they cannot be compiled)."""
    variables = model.trainable_variables + heads.head_variables(head)
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def loss_and_gradients(images, labels):
        with tf.GradientTape() as tape:
            embeddings = model(images, training=True)
            loss = heads.batch_loss(cfg, head, labels, embeddings)
            objective = loss / strategy.num_replicas_in_sync  # gradients are summed over replicas
            if scaled:
                objective = optimizer.scale_loss(objective)
        return loss, tape.gradient(objective, variables)

    compute = tf.function(loss_and_gradients, jit_compile=True) if jit else loss_and_gradients

    def replica_step(batch):
        # --augment=device: resize and jitter the batch here, outside XLA (the crops' shapes vary)
        loss, grads = compute(data.training_images(batch, cfg.image_size), batch[1])
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function
    def step(iterator):
        batch = next(iterator)
        return strategy.reduce("MEAN", strategy.run(replica_step, args=(batch,)), axis=None)

    return step


def training_parts(cfg: Config, learning_rate) -> Tuple[keras.Model, keras.optimizers.Optimizer,
                                                         Optional[heads.ArcFaceHead]]:
    """The model, its built optimizer (loss-scaled under mixed precision) and the training-only head
    (ArcFace; None for triplet losses). Call inside the strategy's scope."""
    model = build_embedding_model(cfg)
    optimizer = keras.optimizers.Adam(learning_rate)
    if cfg.mixed_precision == "on":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    head = heads.make_head(cfg)  # training-only (arcface); checkpointed, never exported
    optimizer.build(model.trainable_variables + heads.head_variables(head))
    return model, optimizer, head


def distributed_input(strategy: tf.distribute.Strategy, cfg: Config):
    """An iterator over the replicas' train batches; each replica's next batches are copied to its
    device while the current step runs."""
    return iter(strategy.distribute_datasets_from_function(
        lambda ctx: data.train_dataset(cfg, ctx),
        options=tf.distribute.InputOptions(experimental_fetch_to_device=True, experimental_per_replica_buffer_size=2)))


class FirstStepFallback:
    """The train step, XLA-compiled when `--jit_compile` resolved to on. Should the first compiled
    step fail (an op XLA cannot compile), the step is rebuilt without XLA, with a log line; a later
    failure, or one without XLA, is a real error and is raised."""

    def __init__(self, strategy, model, optimizer, cfg: Config, head, chief: bool):
        self._args = (strategy, model, optimizer, cfg, head)
        self.jit = cfg.jit_compile == "on"
        self._step = train_step_fn(*self._args, jit=self.jit)
        self._tried, self._chief = False, chief

    def __call__(self, iterator) -> tf.Tensor:
        if self._tried or not self.jit:
            return self._step(iterator)
        self._tried = True
        try:
            return self._step(iterator)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.NotFoundError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            if self._chief:
                print(f"--jit_compile: the train step cannot be XLA-compiled ({first}); training without XLA "
                      "(that step's batch is skipped)", flush=True)
            self.jit = False
            self._step = train_step_fn(*self._args, jit=False)
            return self._step(iterator)


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar, written with TensorFlow alone (the `tensorboard` package is optional:
    `tf.summary.scalar` needs it installed, the event format does not)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
).SerializeToString()


class _History:
    """Per-epoch figures in `history.json` (chief only), cut back to the restored epoch on resume
    (`epochs_done=-1`: a fresh start, earlier rows dropped)."""

    def __init__(self, path: str, write: bool, epochs_done: int):
        self.path, self.write = path, write
        self.rows: List[Dict] = []
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                self.rows = [r for r in json.load(f) if r["epoch"] <= epochs_done]

    def add(self, row: Dict) -> None:
        self.rows.append(row)
        if self.write:
            tmp = self.path + ".tmp"
            with tf.io.gfile.GFile(tmp, "w") as f:
                json.dump(self.rows, f, indent=2)
            tf.io.gfile.rename(tmp, self.path, overwrite=True)


_NO_BATCH = re.compile(r"\d+ pools of .*? gave no batch of P=.*?lower P in --batch")


def _checked_step(step: Callable, iterator) -> float:
    """One training step's loss; the input pipeline's "no batch can be planned" error (pool_input.py),
    which TensorFlow wraps in its own traceback text, becomes one ConfigError line."""
    try:
        return float(step(iterator))
    except tf.errors.OpError as err:
        found = _NO_BATCH.search(str(err))
        if found is None:
            raise
        raise ConfigError(found.group(0)) from None


def train(cfg: Config, strategy: tf.distribute.Strategy, notes: Optional[Dict] = None) -> Tuple[keras.Model, int]:
    """Train (or resume) up to `cfg.epochs` epochs; (model, epochs done). epochs=0 only evaluates.
    `notes` (e.g. the damaged-shard counts of --skip_corrupt_records) go into every history row."""
    notes = notes or {}
    chief = distribute.is_chief(strategy)
    # Records come from shard_index.json (else are counted): skip it when nothing will be trained (--epochs=0).
    steps = cfg.steps_per_epoch or (0 if cfg.epochs == 0 else max(1, records_info.train_records(
        cfg.data_dir, data.list_shards(cfg.data_dir, "train"), cfg.skip_corrupt_records) // (cfg.batch_p * cfg.batch_k)))
    with strategy.scope():
        model, optimizer, head = training_parts(cfg, learning_rate_schedule(cfg, cfg.epochs * steps))
        shared = os.path.join(cfg.output_dir, CHECKPOINT_DIR)
        state = checkpoints.TrainingState(distribute.task_dir(shared, strategy), model, optimizer,
                                          cfg.checkpoints_to_keep, restore_from=shared, head=head)
    restored = state.restore()
    done = int(state.epoch.numpy())
    if chief:
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        frozen = sum(1 for layer in backbone.layers if not layer.trainable)
        print(f"{cfg.backbone}: {model.count_params():,} parameters, "
              f"{sum(int(tf.size(v)) for v in model.trainable_variables):,} trainable; {frozen} backbone layers "
              f"frozen; {strategy.num_replicas_in_sync} replica(s); {steps} steps/epoch", flush=True)
        print(f"resumed from {restored} after epoch {done}" if restored else "starting from scratch", flush=True)

    history = _History(os.path.join(cfg.output_dir, HISTORY_FILE), chief, done if restored else -1)
    writer = (tf.summary.create_file_writer(os.path.join(cfg.output_dir, LOG_DIR)) if chief
              else tf.summary.create_noop_writer())
    validating = bool(data.list_shards(cfg.data_dir, "val", required=False))
    if validating:
        queries = data.eval_dataset(cfg.data_dir, "val", cfg.image_size, cfg.val_queries, 64,
                                    cfg.skip_corrupt_records)
        references = data.eval_dataset(cfg.data_dir, "train", cfg.image_size, cfg.val_references, 64,
                                       cfg.skip_corrupt_records)
        infer = retrieval.inference_fn(model)
    elif chief:
        print(f"no val shards in {cfg.data_dir} (preprocessed with --val_fraction=0?): validation skipped",
              flush=True)

    def validate(epoch: int, row: Dict) -> None:
        if chief:
            if validating:
                row.update(retrieval.evaluate(infer, queries, references, cfg.recall_k))
            with writer.as_default():
                for key, value in row.items():
                    if key not in ("epoch", "queries", "queries_skipped"):
                        _scalar(key if key in ("loss", "learning_rate") else f"val/{key}", value, epoch)
            writer.flush()
            shown = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in row.items() if k != "epoch")
            if shown:  # epoch 0 without validation has nothing to show
                print(f"epoch {epoch}/{cfg.epochs} {shown}", flush=True)
        history.add({**row, **notes})

    if restored is None:
        validate(0, {"epoch": 0})
    if done >= cfg.epochs:
        return model, done

    iterator = distributed_input(strategy, cfg)
    try:
        step = FirstStepFallback(strategy, model, optimizer, cfg, head, chief)
        for epoch in range(done + 1, cfg.epochs + 1):
            if chief:
                print(f"Epoch {epoch}/{cfg.epochs}", flush=True)
            # One line per epoch when the output is a log, not a terminal (the demo streams it).
            bar = keras.utils.Progbar(steps, verbose=(1 if sys.stdout.isatty() else 2) if chief else 0)
            total = 0.0
            for i in range(steps):
                loss = _checked_step(step, iterator)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at epoch {epoch} step {i + 1}")
                total += loss
                bar.update(i + 1, values=[("loss", loss)])
            lr = float(keras.ops.convert_to_tensor(optimizer.learning_rate))
            validate(epoch, {"epoch": epoch, "loss": total / steps, "learning_rate": lr})
            # After the history row: a kill in between redoes this epoch, and resume drops its row.
            state.save(epoch)  # a collective under MultiWorkerMirroredStrategy: every worker saves
    except BaseException as err:
        _release_frames(err)  # see _release_frames: the input pipeline must stop here, not at exit
        raise
    finally:
        del iterator  # the last reference: the pipeline's threads stop now, while Python still runs
    return model, cfg.epochs


def _release_frames(err: BaseException) -> None:
    """Drop the local variables of the finished frames that `err` and the errors chained to it keep
    alive, so that they no longer hold the training input iterator.

    An error raised by a training step carries the frames it passed through, and their locals hold
    the iterator: those in its traceback, and TensorFlow's own frames, which TensorFlow filters out
    of the traceback but which stay linked as the callers (`f_back`) of the frames below them. Kept
    alive that way, the iterator, and the tf.data threads behind it that are still prefetching past
    the error, would live until the interpreter shuts down; there a thread entering the pool
    planner (a Python function, pool_input.py) can no longer take the GIL, while the iterator's
    destructor waits for that call: the process hangs after printing its error line. Once these
    frames are cleared, `train` drops the iterator before the error leaves it: it is destroyed at
    once, its in-flight calls finish, and nothing is left to run Python at exit."""
    errors, frames = set(), set()
    pending = [err]
    while pending:
        error = pending.pop()
        if error is None or id(error) in errors:
            continue
        errors.add(id(error))
        pending += [error.__cause__, error.__context__]
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            while frame is not None and id(frame) not in frames:
                frames.add(id(frame))
                try:
                    frame.clear()
                except RuntimeError:  # still running (train's own frame and its callers): left alone
                    break
                frame = frame.f_back
            tb = tb.tb_next
