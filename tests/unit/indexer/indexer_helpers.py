"""Helpers for indexer tests: a tiny model export and tiny reference shards, made here.

The export is a small Keras model (random weights, fixed seed) wrapped into a SavedModel whose
`serving_default` and `serving_sized` signatures follow trainer/contract.py, so these tests do not
need the trainer.
The shards come from tests.tools.make_shards in a subprocess (it imports the `tfrecord`
package, which cannot share this TensorFlow process).
"""

from __future__ import annotations

import json
import pathlib

from tests.tools.make_shards import run as make_shards  # noqa: F401 - re-exported for the indexer tests
from trainer import contract

EMBEDDING_DIM = 16
IMAGE_SIZE = 32


def tiny_model(dim: int = EMBEDDING_DIM, seed: int = 0, size: int = IMAGE_SIZE):
    """The export's network, random weights from `seed` (the same weights at any `size`)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Rescaling(1 / 127.5, offset=-1),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(dim),
        keras.layers.UnitNormalization(),
    ])


def make_export(export_dir: pathlib.Path, dim: int = EMBEDDING_DIM, seed: int = 0, sized: bool = True) -> pathlib.Path:
    """Write a contract-conforming export: bytes -> decode -> resize -> small CNN -> unit vector.
    `sized=False`: as exports were before contract version 2 (no `serving_sized`, no version)."""
    import tensorflow as tf

    model = tiny_model(dim, seed)

    def decode(b, size):
        img = tf.image.decode_jpeg(b, channels=3)
        return tf.image.resize(tf.cast(img, tf.float32), [size, size])

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
        def serve(self, image_bytes):
            images = tf.map_fn(lambda b: decode(b, IMAGE_SIZE), image_bytes,
                               fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32))
            return {contract.OUTPUT_KEY: self.model(images, training=False)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY),
                                      tf.TensorSpec([], tf.int32, name=contract.SIZE_KEY)])
        def serve_sized(self, image_bytes, image_size):
            images = tf.map_fn(lambda b: decode(b, image_size), image_bytes,
                               fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
            return {contract.OUTPUT_KEY: self.model(images, training=False)}

    export_dir.mkdir(parents=True)
    module = Serving()
    signatures = {contract.SIGNATURE: module.serve}
    info = {"embedding_dim": dim, "image_size": IMAGE_SIZE, "backbone": "tiny-test", "weights": "none",
            "epochs_trained": 0}
    if sized:
        signatures[contract.SIZED_SIGNATURE] = module.serve_sized
        info["contract_version"] = contract.CONTRACT_VERSION
    tf.saved_model.save(module, str(export_dir / contract.SAVED_MODEL_DIR), signatures=signatures)
    (export_dir / contract.EXPORT_INFO).write_text(json.dumps(info))
    return export_dir
