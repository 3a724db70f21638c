"""Export the embedding model for the indexer, per trainer/contract.py.

`export/` is written complete into a temporary sibling directory and then swapped in, so a reader
never sees a half-written export under the final name. The SavedModel's `serving_default` takes
encoded image bytes and applies `data.eval_image` in the graph, so it needs no training code;
`serving_sized` does the same at a size given with the images (contract version 2).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import uuid
from typing import Dict, Optional

import keras
import tensorflow as tf

from trainer import contract
from trainer.input import data
from trainer.config import Config


class _Serving(tf.Module):
    """The SavedModel's signatures (trainer/contract.py), with the evaluation preprocessing:
    `serve` encoded image bytes [N] -> {"embedding": [N, D]} at the training size; `serve_sized`
    the same at a given size.

    Both run the one exported model (one copy of the weights): traced on images of unknown height
    and width, a Keras functional model built for S x S runs at any size, since the backbones are
    convolutional and pooled globally. Its layers are the ones built for S, so padding fixed at
    build time stays as it was at S (MobileNetV2 and EfficientNet-B0 pad stride-2 convolutions by
    the parity of the size they were built for)."""

    def __init__(self, model: keras.Model, image_size: int):
        super().__init__()
        self.model = model
        self.image_size = image_size

    def _embed(self, image_bytes: tf.Tensor, size) -> tf.Tensor:
        side = size if isinstance(size, int) else None
        images = tf.map_fn(lambda b: data.eval_image(b, size), image_bytes,
                           fn_output_signature=tf.TensorSpec([side, side, 3], tf.float32))
        return tf.cast(self.model(images, training=False), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
    def serve(self, image_bytes: tf.Tensor):
        return {contract.OUTPUT_KEY: self._embed(image_bytes, self.image_size)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY),
                                  tf.TensorSpec([], tf.int32, name=contract.SIZE_KEY)])
    def serve_sized(self, image_bytes: tf.Tensor, image_size: tf.Tensor):
        tf.debugging.assert_positive(image_size, message=f"{contract.SIZE_KEY} must be >= 1")
        return {contract.OUTPUT_KEY: self._embed(image_bytes, image_size)}


def float32_copy(model: keras.Model, cfg: Config) -> keras.Model:
    """A float32 clone of a (possibly mixed-precision) model, with the same weights."""
    if keras.mixed_precision.global_policy().name == "float32":
        return model
    from trainer.network.model import build_embedding_model  # the architecture comes from the config

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clone = build_embedding_model(dataclasses.replace(cfg, weights="none"))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    clone.set_weights(model.get_weights())
    return clone


def export(model: keras.Model, cfg: Config, output_dir: str, epochs_trained: int,
           devices: Optional[Dict] = None) -> str:
    """Write `output_dir/export/` (Keras file, SavedModel, export.json); returns its path. `devices`:
    what the run trained on (distribute.Devices.describe), kept in export.json."""
    final = os.path.join(output_dir, contract.EXPORT_DIR)
    for stale in tf.io.gfile.glob(os.path.join(output_dir, f".{contract.EXPORT_DIR}-*.tmp")):
        tf.io.gfile.rmtree(stale)  # left by a run killed while exporting
    tmp = os.path.join(output_dir, f".{contract.EXPORT_DIR}-{uuid.uuid4().hex[:8]}.tmp")
    tf.io.gfile.makedirs(tmp)
    model = float32_copy(model, cfg)
    keras_path = os.path.join(tmp, contract.KERAS_FILE)
    if "://" in keras_path:  # written locally, then copied (gs://)
        local = os.path.join(tempfile.mkdtemp(prefix="export-"), contract.KERAS_FILE)
        model.save(local)
        tf.io.gfile.copy(local, keras_path, overwrite=True)
    else:
        model.save(keras_path)
    module = _Serving(model, cfg.image_size)
    tf.saved_model.save(module, os.path.join(tmp, contract.SAVED_MODEL_DIR),
                        signatures={contract.SIGNATURE: module.serve, contract.SIZED_SIGNATURE: module.serve_sized})
    info = {"embedding_dim": cfg.embedding_dim, "image_size": cfg.image_size, "backbone": cfg.backbone,
            "weights": cfg.weights, "epochs_trained": int(epochs_trained),
            "contract_version": contract.CONTRACT_VERSION}
    if devices is not None:
        info["trained_on"] = devices
    with tf.io.gfile.GFile(os.path.join(tmp, contract.EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=2)
    old = final + ".old"
    if tf.io.gfile.exists(old):
        tf.io.gfile.rmtree(old)
    if tf.io.gfile.exists(final):
        tf.io.gfile.rename(final, old)
    tf.io.gfile.rename(tmp, final)
    if tf.io.gfile.exists(old):
        tf.io.gfile.rmtree(old)
    return final
