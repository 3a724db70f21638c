"""`python -m trainer.train`: learn the landmark embedding with a triplet loss, on N replicas.

    python -m trainer.train --data_dir=RECORDS --output_dir=OUT [--gpus=N] [--preset=tiny|default]
        [--backbone=...] [--weights=imagenet|none|PATH] [--image_size=..] [--embedding_dim=..] [--epochs=N]

Reads RECORDS/{train,val}-*-of-*.tfrecord (pipelines/schema.py). Writes OUT/config.json,
OUT/checkpoints/ (one per epoch; a rerun resumes), OUT/logs/ (TensorBoard), OUT/history.json and
OUT/export/ (trainer/contract.py). `--epochs=0` exports the untrained (pretrained-only) network.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from trainer import config

config.define_flags()
FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        cfg = config.from_flags(FLAGS)
    except config.ConfigError as err:
        sys.exit(f"trainer: error: {err}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress bars
    # TensorFlow is imported only now: devices must be configured before its runtime starts.
    import keras

    from trainer import data, distribute, export, loop, records_info

    try:
        for split in ("train", "val"):
            data.list_shards(cfg.data_dir, split)
        strategy = distribute.make_strategy(cfg.gpus)
        cfg = records_info.resolve_image_size(cfg)  # may read a record: after the devices are set up
        if cfg.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        keras.utils.set_random_seed(cfg.seed)
        if distribute.is_chief(strategy):
            cfg.save(cfg.output_dir)
        model, epochs_done = loop.train(cfg, strategy)
    except (config.ConfigError, FileNotFoundError) as err:
        sys.exit(f"trainer: error: {err}")
    if distribute.is_chief(strategy):  # other workers hold the same weights
        print(f"exported {export.export(model, cfg, cfg.output_dir, epochs_done)}", flush=True)
    distribute.barrier(strategy)


if __name__ == "__main__":
    app.run(main)
