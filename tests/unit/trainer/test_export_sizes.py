"""The export's `serving_sized` signature (trainer/contract.py version 2): the exported network run at
another input size gives what a network built for that size, with the same weights, gives."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from trainer import contract
from trainer.config import Config
from trainer.input import data
from trainer.network import model as model_lib
from trainer.run import export

# MobileNet (v1) pads by fixed amounts, so a network built for any size is the same function.
TINY = Config(data_dir="unused", output_dir="unused", preset="tiny", backbone="mobilenet", alpha=0.25,
              weights="none", image_size=64, embedding_dim=16, freeze="none")


def _variance_preserving(model) -> None:
    """He-normal kernels (seeded): the untrained tiny MobileNet's default initialisation shrinks its
    features to ~0, where every input gives about the same embedding and nothing could be told apart."""
    rng = np.random.default_rng(0)
    weights = []
    for w in model.get_weights():
        if w.ndim == 4:  # conv (kh, kw, in, out) or depthwise (kh, kw, in, 1) kernels
            fan_in = w.shape[0] * w.shape[1] * (1 if w.shape[3] == 1 else w.shape[2])
            w = rng.normal(0, np.sqrt(2.0 / fan_in), w.shape).astype(np.float32)
        weights.append(w)
    model.set_weights(weights)


def _jpeg(seed: int, height: int, width: int) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    pixels = np.stack([(xx * rng.uniform(1, 4)) % 256, (yy * rng.uniform(1, 4)) % 256,
                       rng.integers(0, 256, (height, width))], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = model_lib.build_embedding_model(TINY)
    _variance_preserving(model)
    path = export.export(model, TINY, str(tmp_path_factory.mktemp("run")), epochs_trained=0)
    return model, path


def test_export_declares_contract_2_and_both_signatures(exported):
    _, path = exported
    info = json.loads(open(f"{path}/{contract.EXPORT_INFO}").read())
    assert info["contract_version"] == contract.CONTRACT_VERSION == 2
    loaded = tf.saved_model.load(f"{path}/{contract.SAVED_MODEL_DIR}")
    assert set(loaded.signatures) == {contract.SIGNATURE, contract.SIZED_SIGNATURE}
    sized = loaded.signatures[contract.SIZED_SIGNATURE]
    assert set(sized.structured_input_signature[1]) == {contract.INPUT_KEY, contract.SIZE_KEY}
    assert sized.structured_input_signature[1][contract.SIZE_KEY].dtype == tf.int32


def test_serving_sized_runs_the_same_network_at_the_given_size(exported):
    model, path = exported
    loaded = tf.saved_model.load(f"{path}/{contract.SAVED_MODEL_DIR}")
    jpegs = [_jpeg(i, 48 + 20 * i, 80) for i in range(3)]  # landscape and portrait: centre crops differ
    batch = tf.constant(jpegs)

    def sized(size: int) -> np.ndarray:
        out = loaded.signatures[contract.SIZED_SIGNATURE](**{contract.INPUT_KEY: batch,
                                                            contract.SIZE_KEY: tf.constant(size, tf.int32)})
        return out[contract.OUTPUT_KEY].numpy()

    default = loaded.signatures[contract.SIGNATURE](**{contract.INPUT_KEY: batch})[contract.OUTPUT_KEY].numpy()
    np.testing.assert_allclose(sized(64), default, atol=1e-6)
    by_size = {}
    for size in (45, 64, 91):  # the multi-scale sizes of S = 64
        at_size = model_lib.build_embedding_model(dataclasses.replace(TINY, image_size=size))
        at_size.set_weights(model.get_weights())
        reference = at_size(tf.stack([data.eval_image(tf.constant(j), size) for j in jpegs])).numpy()
        by_size[size] = sized(size)
        np.testing.assert_allclose(by_size[size], reference, atol=2e-5)
        np.testing.assert_allclose(np.linalg.norm(by_size[size], axis=1), 1.0, atol=1e-5)
    assert np.abs(by_size[45] - by_size[91]).max() > 0.05, "the size reaches the network"
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_size must be >= 1"):
        sized(0)
