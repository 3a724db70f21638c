"""The embedding model: weights from a local file, clear errors for bad weights, freezing, export format."""

from __future__ import annotations

import dataclasses

import h5py
import keras
import numpy as np
import pytest

from tests.unit.trainer.trainer_helpers import run_train
from trainer.network import model as model_lib
from trainer.config import Config, ConfigError

TINY = Config(data_dir="unused", output_dir="unused", preset="tiny", backbone="mobilenet", alpha=0.25,
              weights="none", image_size=64, embedding_dim=16, freeze="none")


def test_weights_load_from_the_local_mobilenet_file(mobilenet_weights):
    backbone = model_lib.build_backbone(dataclasses.replace(TINY, weights=str(mobilenet_weights)))
    with h5py.File(mobilenet_weights, "r") as f:
        for name in ("conv1/conv1/kernel:0", "conv_pw_13/conv_pw_13/kernel:0"):
            layer = backbone.get_layer(name.split("/")[0])
            np.testing.assert_array_equal(layer.get_weights()[0], f[name][()])


def test_bad_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--weights=.*no such file"):
        model_lib.build_backbone(dataclasses.replace(TINY, weights=str(tmp_path / "missing.h5")))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(ConfigError, match="cannot load into mobilenet"):
        model_lib.build_backbone(dataclasses.replace(TINY, weights=str(junk)))


def test_cli_reports_a_bad_weights_path(tmp_path, small_shards):
    done = run_train(small_shards, tmp_path / "out", f"--weights={tmp_path}/nope.h5", check=False)
    assert done.returncode != 0
    assert f"trainer: error: --weights={tmp_path}/nope.h5: no such file" in done.stdout


def test_freeze_by_layer_name_and_by_fraction():
    inception = dataclasses.replace(TINY, backbone="inception_v3", alpha=1.0, image_size=75, freeze="auto")
    backbone = next(l for l in model_lib.build_embedding_model(inception).layers if isinstance(l, keras.Model))
    names = [layer.name for layer in backbone.layers]
    cut = names.index("mixed9")
    assert not any(layer.trainable for layer in backbone.layers[:cut])
    assert all(layer.trainable for layer in backbone.layers[cut:])

    small = model_lib.build_backbone(TINY)
    assert model_lib.freeze(small, "0.5") == round(0.5 * len(small.layers))
    with pytest.raises(ConfigError, match="no such layer"):
        model_lib.freeze(model_lib.build_backbone(TINY), "mixed9")


def test_gem_model_outputs_unit_vectors_and_reloads_with_plain_keras(tmp_path):
    model = model_lib.build_embedding_model(dataclasses.replace(TINY, pooling="gem"))
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    out = model(images).numpy()
    assert out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras")(images).numpy(), out, atol=1e-6)


def test_bn_momentum_flag_reaches_every_batchnorm_layer():
    model = model_lib.build_embedding_model(dataclasses.replace(TINY, bn_momentum=0.9))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    momenta = {layer.momentum for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


# What each newer family's own preprocessing layer (include_preprocessing=True) makes of the model's
# [0, 255] input: EfficientNetV2 S/M rescale to [-1, 1]; ConvNeXt normalises by the ImageNet mean/std.
_IMAGENET_MEAN, _IMAGENET_STD = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
_FIRST_LAYER_OF_255 = {"efficientnet_v2": np.full(3, 255 / 128 - 1), "convnext": (255 - _IMAGENET_MEAN) / _IMAGENET_STD}


@pytest.mark.parametrize("backbone", ["efficientnet_v2_s", "efficientnet_v2_m", "convnext_tiny", "convnext_small"])
def test_newer_backbones_build_and_scale_their_own_input(backbone):
    model = model_lib.build_embedding_model(dataclasses.replace(TINY, backbone=backbone, image_size=32, alpha=1.0,
                                                                freeze="auto"))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = model(images).numpy()
    assert out.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # The images reach the backbone unscaled (no scaling of ours on top of the backbone's own) ...
    backbone_model = model.layers[1]
    assert isinstance(backbone_model, keras.Model) and len(model.layers) == 5  # input, backbone, pool, dense, norm
    # ... whose first layer maps [0, 255] to the range that family was trained on.
    first = backbone_model.layers[1]
    white = np.full((1, 1, 1, 3), 255.0, np.float32)
    expected = _FIRST_LAYER_OF_255[backbone.rsplit("_", 1)[0]]
    np.testing.assert_allclose(np.asarray(first(white)).reshape(3), expected, rtol=1e-4)
    frozen = sum(not layer.trainable for layer in backbone_model.layers)
    assert frozen == round(0.8 * len(backbone_model.layers))  # --freeze=auto
