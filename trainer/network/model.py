"""The embedding network: keras.applications backbone -> pooling -> projection -> L2 normalisation.

Input: float32 images [N, S, S, 3] in [0, 255]. Each backbone's own input scaling is built in from
stock layers and `keras.ops` nodes (GeM pooling too), so the saved `.keras` file loads with plain
Keras, without this package.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, NamedTuple, Optional

import keras
import tensorflow as tf

from trainer.config import Config, ConfigError, freeze_fraction


class Backbone(NamedTuple):
    build: Callable[..., keras.Model]
    scaling: str  # "tf": [-1, 1]; "caffe": BGR minus ImageNet mean; "none": the model scales itself
    # ("none": EfficientNet, EfficientNetV2 and ConvNeXt are built with include_preprocessing=True and
    # take [0, 255] themselves: B0 and ConvNeXt normalise by the ImageNet mean/std, V2-S/M to [-1, 1])
    auto_freeze: str  # what --freeze=auto means for this backbone


BACKBONES: Dict[str, Backbone] = {
    "inception_v3": Backbone(keras.applications.InceptionV3, "tf", "mixed9"),
    "resnet50": Backbone(keras.applications.ResNet50, "caffe", "0.8"),
    "mobilenet": Backbone(keras.applications.MobileNet, "tf", "0.8"),
    "mobilenet_v2": Backbone(keras.applications.MobileNetV2, "tf", "0.8"),
    "efficientnet_b0": Backbone(keras.applications.EfficientNetB0, "none", "0.8"),
    "efficientnet_v2_s": Backbone(keras.applications.EfficientNetV2S, "none", "0.8"),
    "efficientnet_v2_m": Backbone(keras.applications.EfficientNetV2M, "none", "0.8"),
    "convnext_tiny": Backbone(keras.applications.ConvNeXtTiny, "none", "0.8"),
    "convnext_small": Backbone(keras.applications.ConvNeXtSmall, "none", "0.8"),
}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _local_weights(weights: str) -> Optional[str]:
    """Keras' `weights` argument for the flag: "imagenet", None, or a readable local file."""
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return None
    if not tf.io.gfile.exists(weights) or tf.io.gfile.isdir(weights):
        raise ConfigError(f"--weights={weights}: no such file (expected imagenet, none, or a Keras weights file)")
    if "://" not in weights:
        return weights
    local = os.path.join(tempfile.mkdtemp(prefix="weights-"), os.path.basename(weights))
    tf.io.gfile.copy(weights, local)  # Keras reads weights from local files only
    return local


def build_backbone(cfg: Config) -> keras.Model:
    """The headless backbone with the configured weights; a clear error when they do not fit."""
    spec = BACKBONES[cfg.backbone]
    kwargs = dict(include_top=False, input_shape=(cfg.image_size, cfg.image_size, 3),
                  weights=_local_weights(cfg.weights))
    if cfg.backbone in ("mobilenet", "mobilenet_v2"):
        kwargs["alpha"] = cfg.alpha
    try:
        return spec.build(**kwargs)
    except (ValueError, OSError, KeyError) as err:
        if cfg.weights == "none":
            raise
        raise ConfigError(
            f"--weights={cfg.weights}: cannot load into {cfg.backbone}"
            f"{f' (alpha {cfg.alpha})' if cfg.alpha != 1.0 else ''} at {cfg.image_size} px: {err}"
        ) from err


def freeze(backbone: keras.Model, spec: str) -> int:
    """Freeze backbone layers below a named layer, or the first fraction of them; returns how many.

    Frozen BatchNormalization layers also stop updating their statistics (Keras 3 runs a
    non-trainable BN in inference mode).
    """
    layers = backbone.layers
    if spec == "none":
        count = 0
    elif (fraction := freeze_fraction(spec)) is not None:
        count = int(round(fraction * len(layers)))
    else:
        names = [layer.name for layer in layers]
        if spec not in names:
            near = [n for n in names if n.startswith(spec[:3])][:8]
            raise ConfigError(f"--freeze={spec}: no such layer in the backbone (names like: {near})")
        count = names.index(spec)
    for layer in layers[:count]:
        layer.trainable = False
    return count


def _scale(x, scaling: str):
    if scaling == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1")(x)
    if scaling == "caffe":
        return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR)
    return x


def build_embedding_model(cfg: Config) -> keras.Model:
    """The trainable embedding model for `cfg` (create it inside the strategy's scope)."""
    backbone = build_backbone(cfg)
    spec = BACKBONES[cfg.backbone]
    freeze(backbone, spec.auto_freeze if cfg.freeze == "auto" else cfg.freeze)
    for layer in backbone.layers:
        # From scratch, 0.99 lets the inference statistics lag the weights by hundreds of steps
        # and a short run's embeddings collapse; the flag lets such runs track them faster.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    images = keras.Input((cfg.image_size, cfg.image_size, 3), name="images")
    x = backbone(_scale(images, spec.scaling))
    if cfg.pooling == "gem":
        x = keras.ops.power(keras.ops.maximum(keras.ops.cast(x, "float32"), 1e-6), cfg.gem_p)
        x = keras.ops.power(keras.ops.mean(x, axis=[1, 2]), 1.0 / cfg.gem_p)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(cfg.embedding_dim, name="projection", dtype="float32")(x)
    x = keras.layers.UnitNormalization(name="l2_normalize", dtype="float32")(x)
    return keras.Model(images, x, name=f"{cfg.backbone}_embedding")
