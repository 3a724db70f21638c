"""`python -m trainer.train`: learn the landmark embedding with a triplet loss, on N replicas.

    python -m trainer.train --data_dir=RECORDS --output_dir=OUT [--gpus=N | --cpu_replicas=N] [--preset=tiny|default]
        [--backbone=...] [--weights=imagenet|none|PATH] [--image_size=..] [--embedding_dim=..] [--epochs=N]

Reads RECORDS/{train,val}-*-of-*.tfrecord (pipelines/schema.py; without val shards, validation is
skipped). Writes OUT/config.json,
OUT/checkpoints/ (one per epoch; a rerun resumes), OUT/logs/ (TensorBoard), OUT/history.json and
OUT/export/ (trainer/contract.py). `--epochs=0` exports the untrained (pretrained-only) network.
"""

from __future__ import annotations

from absl import app, flags, logging

from pipelines.cli import cli_errors, console, flag_checks
from trainer import config

config.define_flags()
flags.DEFINE_bool("overwrite", False, "Delete a previous run in --output_dir (checkpoints, history, logs, export) "
                  "and start over; without it a rerun resumes, and one with another model shape is refused.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = config.from_flags(FLAGS)
    flag_checks.output_dir(cfg.output_dir)  # an existing file or a read-only folder: refused before any work
    console.setup(FLAGS.verbosity, tensorflow=True)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress bars
    # TensorFlow is imported only now: devices must be configured before its runtime starts.
    import keras
    import tensorflow as tf

    from trainer.input import data, records_info, shard_check
    from trainer.network import heads
    from trainer.run import distribute, export, loop, run_dir

    # Val is optional (records preprocessed with --val_fraction=0): the loop then skips validation.
    shards = data.list_shards(cfg.data_dir, "train") + data.list_shards(cfg.data_dir, "val", required=False)
    devices = distribute.select(cfg.gpus, cfg.cpu_replicas)  # a one-line error before anything is written
    cfg = distribute.resolve(cfg, devices)
    strategy = distribute.make_strategy(devices)
    cfg = records_info.resolve_image_size(cfg)  # may read a record: after the devices are set up
    cfg = heads.resolve_classes(cfg)  # ArcFace: the class count is part of the run's shape
    records_info.check_batch_fits(cfg)
    run_dir.check_rerun(cfg.output_dir, cfg, FLAGS.overwrite)
    if cfg.mixed_precision == "on":
        keras.mixed_precision.set_global_policy("mixed_float16")
    ran_on = devices.describe(cfg.mixed_precision == "on", cfg.jit_compile == "on")
    if distribute.is_chief(strategy):
        print(devices.log_line(cfg.mixed_precision == "on", cfg.jit_compile == "on"), flush=True)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    if distribute.is_chief(strategy):
        if FLAGS.overwrite:
            for path in run_dir.clear(cfg.output_dir):
                print(f"--overwrite: removed {path}", flush=True)
        cfg.save(cfg.output_dir)
    if FLAGS.overwrite:
        distribute.barrier(strategy)  # no worker restores before the chief has cleared the old run
    notes = {**(shard_check.scan_all(shards).counts() if cfg.skip_corrupt_records else {}), "devices": ran_on}
    try:
        model, epochs_done = loop.train(cfg, strategy, notes)
    except tf.errors.DataLossError as err:  # names no file: find the shard
        damaged = shard_check.locate(shards, err)
        if damaged is None:
            raise
        raise damaged from err
    if distribute.is_chief(strategy):  # other workers hold the same weights
        print(f"exported {export.export(model, cfg, cfg.output_dir, epochs_done, ran_on)}", flush=True)
    distribute.barrier(strategy)


if __name__ == "__main__":
    app.run(cli_errors.absl_main("trainer", main))
