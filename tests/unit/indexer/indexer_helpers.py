"""Helpers for indexer tests: a tiny model export and tiny reference shards, made here.

The export is a small Keras model (random weights, fixed seed) wrapped into a SavedModel whose
`serving_default` signature follows trainer/contract.py, so these tests do not need the trainer.
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


def make_export(export_dir: pathlib.Path, dim: int = EMBEDDING_DIM, seed: int = 0) -> pathlib.Path:
    """Write a contract-conforming export: bytes -> decode -> resize -> small CNN -> unit vector."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
        keras.layers.Rescaling(1 / 127.5, offset=-1),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(dim),
        keras.layers.UnitNormalization(),
    ])

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
        def serve(self, image_bytes):
            def decode(b):
                img = tf.image.decode_jpeg(b, channels=3)
                return tf.image.resize(tf.cast(img, tf.float32), [IMAGE_SIZE, IMAGE_SIZE])

            images = tf.map_fn(decode, image_bytes,
                               fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32))
            return {contract.OUTPUT_KEY: self.model(images, training=False)}

    export_dir.mkdir(parents=True)
    module = Serving()
    tf.saved_model.save(module, str(export_dir / contract.SAVED_MODEL_DIR),
                        signatures={contract.SIGNATURE: module.serve})
    (export_dir / contract.EXPORT_INFO).write_text(json.dumps(
        {"embedding_dim": dim, "image_size": IMAGE_SIZE, "backbone": "tiny-test", "weights": "none",
         "epochs_trained": 0}))
    return export_dir
