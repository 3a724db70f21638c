"""The trainer's resolved configuration: one frozen dataclass, built once from absl flags.

A preset (`default`, `tiny`) gives every field a value; flags given on the command line override
it. The result is validated here, passed down explicitly, and saved as `config.json` beside the
outputs, so a run is reproducible from that file alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Dict, Optional, Tuple, Union

from absl import flags

from pipelines.cli import flag_checks
from trainer.input.sampling import POLICIES

BACKBONES = ("inception_v3", "resnet50", "mobilenet", "mobilenet_v2", "efficientnet_b0", "efficientnet_v2_s",
             "efficientnet_v2_m", "convnext_tiny", "convnext_small")
LOSSES = ("semihard", "batch_hard", "batch_all", "arcface")
POOLINGS = ("avg", "gem")
AUGMENT = ("device", "host")
SWITCHES = ("auto", "on", "off")
DYNAMIC = "dynamic"  # --arcface_margin=dynamic
LANDMARK_SAMPLING = POLICIES
CONFIG_FILE = "config.json"


class ConfigError(flag_checks.SettingsError):
    """A flag value that cannot work, with a message that says which flag and why."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a training run depends on. Field defaults are the `default` preset."""

    data_dir: str
    output_dir: str
    preset: str = "default"
    gpus: int = 0  # GPUs to train on: 0 = every visible GPU, or the CPU when there is none (distribute.py)
    cpu_replicas: int = 0  # replicas on logical CPU devices instead (tests; never chosen silently)
    replicas: int = 1  # not a flag: the local replica count, resolved from the devices at start
    backbone: str = "inception_v3"
    weights: str = "imagenet"  # imagenet | none | path to a Keras weights file (no top)
    alpha: float = 1.0  # width multiplier, MobileNet / MobileNetV2 only
    image_size: int = 0  # 0: the size the records were stored at (shard_index.json), resolved at start
    embedding_dim: int = 256
    pooling: str = "avg"
    gem_p: float = 3.0
    freeze: str = "auto"  # auto | none | a layer name (frozen below it) | a fraction of layers in [0, 1]
    bn_momentum: float = 0.99  # BatchNormalization moving-average momentum (Keras' default)
    loss: str = "semihard"
    margin: float = 0.2
    arcface_scale: float = 30.0  # logit scale s of --loss=arcface
    arcface_margin: Union[float, str] = 0.3  # additive angular margin m (radians) of --loss=arcface, or "dynamic"
    arcface_subcenters: int = 1  # centres per class (sub-center ArcFace; 1 = plain ArcFace)
    batch_p: int = 32  # landmarks per global batch (split over replicas)
    batch_k: int = 4  # images per landmark
    landmark_sampling: str = "sqrt"  # uniform | sqrt | proportional: how often a landmark is drawn (sampling.py)
    pool_shards: int = 4  # whole train shards held at once to plan P x K batches from
    epochs: int = 20
    steps_per_epoch: int = 0  # 0: one pass over the train records per epoch
    learning_rate: float = 1e-4
    warmup_steps: int = 500
    mixed_precision: str = "auto"  # auto | on | off; auto = on for GPUs of compute capability >= 7.0
    jit_compile: str = "auto"  # auto | on | off: XLA-compiled train step; auto = on for GPUs
    val_queries: int = 2000  # val images used as retrieval queries (0: all)
    val_references: int = 20000  # train images used as retrieval references (0: all)
    recall_k: Tuple[int, ...] = (1, 5, 10)
    checkpoints_to_keep: int = 3
    seed: int = 0
    deterministic: bool = False  # TensorFlow op determinism: the same run twice gives the same weights
    skip_corrupt_records: bool = False  # damaged shards: skip the rest of the shard (counted) instead of stopping
    augment: str = "device"  # device: resize, flip and colour jitter batched in the training step; host: all on the CPU
    data_service: str = ""  # grpc://HOST:PORT of a tf.data service dispatcher (trainer/data_service.py)
    data_service_timeout: int = 60  # seconds to wait for the dispatcher to answer before a one-line error
    classes: int = 0  # --loss=arcface: the train landmarks (the head's classes), found at start (heads.py); not a flag

    def __post_init__(self) -> None:
        _check(self.backbone in BACKBONES, f"--backbone={self.backbone}: expected one of {BACKBONES}")
        _check(self.loss in LOSSES, f"--loss={self.loss}: expected one of {LOSSES}")
        _check(self.pooling in POOLINGS, f"--pooling={self.pooling}: expected one of {POOLINGS}")
        _check(self.gpus >= 0 and self.cpu_replicas >= 0, "--gpus and --cpu_replicas must be >= 0")
        _check(not (self.gpus and self.cpu_replicas),
               f"--gpus={self.gpus} and --cpu_replicas={self.cpu_replicas}: give one (GPUs, or replicas on the CPU)")
        _check(self.replicas >= 1, f"replicas={self.replicas}: need at least 1 device")
        _check(self.mixed_precision in SWITCHES, f"--mixed_precision={self.mixed_precision}: expected one of {SWITCHES}")
        _check(self.jit_compile in SWITCHES, f"--jit_compile={self.jit_compile}: expected one of {SWITCHES}")
        _check(self.image_size == 0 or self.image_size >= 32,
               f"--image_size={self.image_size}: the backbones need at least 32 px (0: the stored size)")
        _check(self.embedding_dim >= 2, f"--embedding_dim={self.embedding_dim}: need at least 2")
        _check(self.batch_p >= 2, f"--batch={self.batch_p},{self.batch_k}: P needs 2+ landmarks for negatives")
        _check(self.batch_k >= 2, f"--batch={self.batch_p},{self.batch_k}: K needs 2+ images for positives")
        for flag, n in (("replicas", self.replicas), ("--gpus", self.gpus), ("--cpu_replicas", self.cpu_replicas)):
            _check(n == 0 or self.batch_p % n == 0,
                   f"--batch={self.batch_p},{self.batch_k}: P must split evenly over {flag}={n} replicas "
                   "(each replica's batch holds whole P x K groups)")
        _check(self.landmark_sampling in LANDMARK_SAMPLING,
               f"--landmark_sampling={self.landmark_sampling}: expected one of {LANDMARK_SAMPLING}")
        _check(self.pool_shards >= 1, f"--pool_shards={self.pool_shards}: need at least 1")
        _check(self.margin > 0, f"--margin={self.margin}: must be positive")
        _check(self.arcface_scale > 0 and self.arcface_subcenters >= 1
               and (self.arcface_margin == DYNAMIC or 0 <= self.arcface_margin < 1.5),
               "--arcface_scale > 0, --arcface_margin within [0, 1.5) radians (or dynamic), --arcface_subcenters >= 1")
        _check(self.epochs >= 0 and self.steps_per_epoch >= 0, "--epochs and --steps_per_epoch must be >= 0")
        _check(self.learning_rate > 0 and self.warmup_steps >= 0, "--learning_rate > 0, --warmup_steps >= 0")
        # Every float once more through the shared checks: NaN and infinity fail every comparison above.
        for name, value, low in (("alpha", self.alpha, 0), ("gem_p", self.gem_p, 0), ("margin", self.margin, 0),
                                 ("arcface_scale", self.arcface_scale, 0), ("learning_rate", self.learning_rate, 0)):
            flag_checks.number(f"--{name}", value, low, above=True)
        if self.arcface_margin != DYNAMIC:
            flag_checks.number("--arcface_margin", self.arcface_margin, 0, 1.5)
        flag_checks.number("--bn_momentum", self.bn_momentum, 0, 1)
        for k in self.recall_k:
            flag_checks.integer("--recall_k", k, 1)
        _check(len(self.recall_k) > 0, "--recall_k: give at least one k")
        flag_checks.integer("classes", self.classes, 0)
        _check(self.alpha == 1.0 or self.backbone in ("mobilenet", "mobilenet_v2"),
               f"--alpha={self.alpha}: only MobileNet and MobileNetV2 have a width multiplier")
        _check(self.checkpoints_to_keep >= 2, "--checkpoints_to_keep: need 2+ to fall back from a bad one")
        _check(self.gem_p > 0, f"--gem_p={self.gem_p}: must be positive")
        _check(0.0 <= self.bn_momentum < 1.0, f"--bn_momentum={self.bn_momentum}: must be within [0, 1)")
        _check(self.augment in AUGMENT, f"--augment={self.augment}: expected one of {AUGMENT}")
        _check(not self.data_service or re.fullmatch(r"grpc://[^:/\s]+:\d+", self.data_service) is not None,
               f"--data_service={self.data_service}: expected grpc://HOST:PORT (a tf.data service dispatcher)")
        _check(self.data_service_timeout >= 1, f"--data_service_timeout={self.data_service_timeout}: must be >= 1 s")
        freeze_fraction(self.freeze)  # validates a numeric value

    @property
    def replica_p(self) -> int:
        """Landmarks per replica batch."""
        return self.batch_p // self.replicas

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, directory: str) -> None:
        """Write `config.json` into `directory` atomically (temp file + rename)."""
        import tensorflow as tf  # gfile: local or gs://

        tf.io.gfile.makedirs(directory)
        path = os.path.join(directory, CONFIG_FILE)
        tmp = path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(self.to_json() + "\n")
        tf.io.gfile.rename(tmp, path, overwrite=True)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def freeze_fraction(freeze: str) -> Optional[float]:
    """The fraction in `--freeze` if it is numeric, None for `none` or a layer name."""
    try:
        value = float(freeze)
    except ValueError:
        return None
    _check(0.0 <= value <= 1.0, f"--freeze={freeze}: a fraction must be within [0, 1]")
    return value


PRESETS: Dict[str, Dict[str, Any]] = {
    "default": {},
    # Seconds on a laptop CPU: what the tests run.
    "tiny": dict(
        backbone="mobilenet", alpha=0.25, weights="none", image_size=64, embedding_dim=16, freeze="none",
        batch_p=4, batch_k=2, epochs=2, steps_per_epoch=2,
        learning_rate=1e-3, warmup_steps=0, val_queries=64, val_references=256, recall_k=(1, 5),
        checkpoints_to_keep=2,
    ),
}

# Flags that map one-to-one onto a Config field (paths and preset are required/apart; batch and
# recall_k are parsed apart): every other field, so a new one cannot be left out of the overrides.
_SIMPLE = [f.name for f in dataclasses.fields(Config)
           if f.name not in {"data_dir", "output_dir", "preset", "batch_p", "batch_k", "recall_k", "replicas",
                             "arcface_margin", "classes"}]


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Register the trainer's flags on `fv` (defaults shown are the `default` preset)."""
    d = Config(data_dir="", output_dir="")
    on = dict(flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Directory (local or gs://) of train-*/val-* TFRecord shards.", **on)
    flags.DEFINE_string("output_dir", None, "Where config.json, checkpoints/, logs/ and export/ go.", **on)
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Base values; flags given explicitly override them.", **on)
    flags.DEFINE_integer("gpus", d.gpus, "GPUs to train on (one replica each): 0 = every visible GPU, or the CPU "
                         "when TensorFlow sees none; N = exactly N, an error when fewer are visible.", **on)
    flags.DEFINE_integer("cpu_replicas", d.cpu_replicas, "Train N replicas on logical CPU devices instead of GPUs "
                         "(tests, debugging); 0: off.", **on)
    flags.DEFINE_enum("backbone", d.backbone, list(BACKBONES), "keras.applications backbone.", **on)
    flags.DEFINE_string("weights", d.weights, "imagenet | none | path to a no-top Keras weights file.", **on)
    flags.DEFINE_float("alpha", d.alpha, "Width multiplier (MobileNet, MobileNetV2).", **on)
    flags.DEFINE_integer("image_size", d.image_size, "Square input size in pixels; 0: the records' stored size.", **on)
    flags.DEFINE_integer("embedding_dim", d.embedding_dim, "Embedding dimension.", **on)
    flags.DEFINE_enum("pooling", d.pooling, list(POOLINGS), "Global pooling: average or GeM.", **on)
    flags.DEFINE_float("gem_p", d.gem_p, "GeM exponent (fixed).", **on)
    flags.DEFINE_string("freeze", d.freeze, "auto (mixed9 for InceptionV3, else 0.8) | none | layer name (layers "
                        "before it are frozen) | fraction of backbone layers in [0,1].", **on)
    flags.DEFINE_float("bn_momentum", d.bn_momentum, "BatchNormalization moving-average momentum; lower it (e.g. "
                       "0.9) when training from scratch for few steps, so inference statistics keep up.", **on)
    flags.DEFINE_enum("loss", d.loss, list(LOSSES), "Triplet mining (FaceNet semi-hard, batch-hard, batch-all) "
                      "or arcface (additive angular margin softmax over the train landmarks).", **on)
    flags.DEFINE_float("arcface_scale", d.arcface_scale, "--loss=arcface: logit scale s.", **on)
    flags.DEFINE_string("arcface_margin", str(d.arcface_margin), "--loss=arcface: additive angular margin (radians), "
                        "or `dynamic`: per class, from 0.5 (rarest) down to 0.05 (most frequent) as n^-1/4 "
                        "(trainer/network/losses.py:dynamic_margins).", **on)
    flags.DEFINE_integer("arcface_subcenters", d.arcface_subcenters, "--loss=arcface: centres per class.", **on)
    flags.DEFINE_float("margin", d.margin, "Triplet margin (Euclidean distance between unit vectors).", **on)
    flags.DEFINE_string("batch", f"{d.batch_p},{d.batch_k}", "P,K: P landmarks x K images per global batch.", **on)
    flags.DEFINE_enum("landmark_sampling", d.landmark_sampling, list(LANDMARK_SAMPLING),
                      "How often a landmark with n photos is drawn: uniform, sqrt(n) or n.", **on)
    flags.DEFINE_integer("pool_shards", d.pool_shards, "Whole train shards held at once to plan batches from.", **on)
    flags.DEFINE_integer("epochs", d.epochs, "Total epochs; 0 exports the untrained (pretrained-only) network.", **on)
    flags.DEFINE_integer("steps_per_epoch", d.steps_per_epoch, "0: one pass over the train records.", **on)
    flags.DEFINE_float("learning_rate", d.learning_rate, "Peak learning rate (Adam), reached after warm-up.", **on)
    flags.DEFINE_integer("warmup_steps", d.warmup_steps, "Linear warm-up steps, then cosine decay.", **on)
    flags.DEFINE_enum("mixed_precision", d.mixed_precision, list(SWITCHES), "mixed_float16 compute with loss "
                      "scaling; auto: on for GPUs of compute capability 7.0 or more. The export is float32.", **on)
    flags.DEFINE_enum("jit_compile", d.jit_compile, list(SWITCHES), "XLA-compile the train step; auto: on for GPUs. "
                      "Falls back, with a log line, where an op cannot be compiled.", **on)
    flags.DEFINE_integer("val_queries", d.val_queries, "Val images used as retrieval queries (0: all).", **on)
    flags.DEFINE_integer("val_references", d.val_references, "Train images used as references (0: all).", **on)
    flags.DEFINE_list("recall_k", [str(k) for k in d.recall_k], "k values reported as recall@k.", **on)
    flags.DEFINE_integer("checkpoints_to_keep", d.checkpoints_to_keep, "Epoch checkpoints kept (2+).", **on)
    flags.DEFINE_integer("seed", d.seed, "Seed for sampling and augmentation.", **on)
    flags.DEFINE_bool("deterministic", d.deterministic, "TensorFlow op determinism "
                      "(tf.config.experimental.enable_op_determinism): with the same seed, data and devices, a "
                      "rerun gives the same weights to the last bit; ops with no deterministic kernel fail.", **on)
    flags.DEFINE_bool("skip_corrupt_records", d.skip_corrupt_records, "Damaged train/val shards: skip from the first "
                      "damaged record to the end of that shard (counted in the log and history.json) instead of "
                      "stopping with an error naming the file.", **on)
    flags.DEFINE_enum("augment", d.augment, list(AUGMENT), "device: the host only decodes the crop window (uint8); "
                      "resize, flip and colour jitter run batched in the training step. host: all augmentation on the CPU (the "
                      "former path).", **on)
    flags.DEFINE_string("data_service", d.data_service, "grpc://HOST:PORT of a tf.data service dispatcher whose "
                        "workers run the training input (docs/train.md); empty: this process reads it.", **on)
    flags.DEFINE_integer("data_service_timeout", d.data_service_timeout, "Seconds to wait for the --data_service "
                         "dispatcher to answer before stopping with an error.", **on)


def from_flags(values: flags.FlagValues) -> Config:
    """Preset values overridden by the flags present on the command line."""
    if not values.data_dir or not values.output_dir:
        raise ConfigError("--data_dir and --output_dir are required")
    fields: Dict[str, Any] = dict(PRESETS[values.preset])
    for name in _SIMPLE:
        if values[name].present:
            fields[name] = values[name].value
    if values["batch"].present:
        fields["batch_p"], fields["batch_k"] = _parse_batch(values.batch)
    if values["arcface_margin"].present:
        fields["arcface_margin"] = _parse_margin(values.arcface_margin)
    if values["recall_k"].present:
        try:
            fields["recall_k"] = tuple(sorted(int(k) for k in values.recall_k))
        except ValueError:
            raise ConfigError(f"--recall_k={','.join(values.recall_k)}: expected integers") from None
    return Config(data_dir=values.data_dir, output_dir=values.output_dir, preset=values.preset, **fields)


def _parse_margin(text: str) -> Union[float, str]:
    if text == DYNAMIC:
        return DYNAMIC
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--arcface_margin={text}: expected radians (e.g. 0.3) or dynamic") from None
    if not math.isfinite(value):
        raise ConfigError(f"--arcface_margin={text}: expected a finite number of radians, or dynamic")
    return value


def _parse_batch(text: str) -> Tuple[int, int]:
    try:
        p, k = (int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--batch={text}: expected P,K (e.g. 32,4)") from None
    return p, k
