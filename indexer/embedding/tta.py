"""Test-time augmentation of the embedding: `--tta=none`, `flip`, `multiscale` or `flip,multiscale`.

flip        averages an image's embedding with its mirror image's.
multiscale  averages its embeddings at three input sizes, round(S/sqrt2), S and round(S*sqrt2) for
            the export's training size S (`multiscale_sizes`; S/sqrt2 is irrational for any S >= 1,
            so rounding to the nearest integer never meets a tie): the multi-scale descriptor of the
            Google Landmark Retrieval 2020 and 2021 winners (scales 1/sqrt2, 1, sqrt2), which lets
            one descriptor see a landmark at the sizes it had in training and in the photo.
flip,multiscale  both: the mean over the 3 sizes x 2 mirror images.

Every view's embedding is a unit vector; the augmented embedding is their mean, normalised again
(L2). The order of the names on the command line does not matter; the canonical spelling (`parse`)
is the one recorded in the index manifest, and prediction embeds queries with the index's mode.

The exported SavedModel takes encoded image bytes and preprocesses them in its graph
(trainer/contract.py), so the mirror image is passed to it re-encoded as a JPEG at quality 95
without chroma subsampling (mean pixel error under 1 level; PNG would be exact but measured ~7x
slower to encode, and its larger files slower to decode). Landmarks are mostly left-right
symmetric in what identifies them (a mirrored cathedral is still that cathedral), and training
already flips at random, so the two views agree on the landmark and average out view-specific
noise. It about doubles the embedding cost. The other sizes go through the export's
`serving_sized` signature (export contract version 2): the same network run at that size. An
export made before it cannot do multiscale: `require` says to export it again.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Tuple

import numpy as np

from pipelines.cli.cli_errors import SettingsError
from trainer import contract

FLIP = "flip"
MULTISCALE = "multiscale"
AUGMENTATIONS = (FLIP, MULTISCALE)  # the canonical order of a combination
MODES = ("none", FLIP, MULTISCALE, f"{FLIP},{MULTISCALE}")  # every canonical spelling
SCALES = (1 / math.sqrt(2), 1.0, math.sqrt(2))


def parse(spec: str) -> str:
    """The canonical mode of a `--tta` value: `none`, or augmentation names joined by commas in
    AUGMENTATIONS order (`multiscale,flip` -> `flip,multiscale`). SettingsError when it is neither."""
    names = [n.strip() for n in str(spec).split(",")]
    if names == ["none"]:
        return "none"
    if not names or any(n not in AUGMENTATIONS for n in names) or len(set(names)) != len(names):
        raise SettingsError(f"--tta={spec}: expected none, or one or more of {', '.join(AUGMENTATIONS)} "
                            f"separated by commas (e.g. --tta={FLIP},{MULTISCALE})")
    return ",".join(n for n in AUGMENTATIONS if n in names)


def augmentations(mode: str) -> Tuple[str, ...]:
    """The augmentation names of a mode (() for none)."""
    mode = parse(mode)
    return () if mode == "none" else tuple(mode.split(","))


def multiscale_sizes(image_size: int) -> Tuple[int, int, int]:
    """(round(S/sqrt2), S, round(S*sqrt2)) for the training size S, each at least 1."""
    return tuple(max(1, int(math.floor(image_size * s + 0.5))) for s in SCALES)


def reexport_error(mode: str, where: str, version: int) -> SettingsError:
    """The one-line error for multiscale on an export without `serving_sized`."""
    return SettingsError(
        f"--tta={mode}: the model in {where} was exported under export contract {version}, without the "
        f"'{contract.SIZED_SIGNATURE}' signature multiscale needs: export it again with this trainer (rerun its "
        f"`python -m trainer.train` command: a finished run resumes from its last checkpoint and re-exports)")


def require(export_info: Dict, mode: str, where: str) -> None:
    """Refuse (`reexport_error`) a mode the export described by `export_info` (its export.json, in
    folder `where`) cannot embed with: multiscale needs contract version 2 (`serving_sized`)."""
    version = contract.contract_version(export_info)
    if MULTISCALE in augmentations(mode) and version < contract.SIZED_SINCE:
        raise reexport_error(mode, where, version)


def require_export(export_dir: str, mode: str) -> None:
    """`require` for the export in `export_dir`, whose export.json is read only when `mode` needs it."""
    if MULTISCALE in augmentations(mode):
        from indexer.embedding.embed import check_export

        require(check_export(export_dir), mode, export_dir)


@functools.lru_cache(maxsize=None)
def _mirror_fn():
    """The traced mirror function (built once: an eager map over a batch is several times slower)."""
    import tensorflow as tf

    def one(b):
        image = tf.io.decode_image(b, channels=3, expand_animations=False)
        return tf.io.encode_jpeg(tf.image.flip_left_right(image), quality=95, chroma_downsampling=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def mirror(image_bytes):
        return tf.map_fn(one, image_bytes, fn_output_signature=tf.string)

    return mirror


def mirrored_jpeg(image_bytes):
    """tf.string [N] of encoded images -> tf.string [N] of their left-right mirror images (JPEG q95)."""
    import tensorflow as tf

    return _mirror_fn()(tf.convert_to_tensor(image_bytes, tf.string))


def embed(embedder, image_bytes, mode: str = "none") -> np.ndarray:
    """Embeddings [N, D] of a batch of encoded images with the given augmentation. `embedder(bytes)`
    embeds at the training size; multiscale also needs `embedder.sized(bytes, size)` and
    `embedder.image_size` (indexer/embedding/embed.py's Embedder)."""
    try:
        names = augmentations(mode)
    except SettingsError:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {MODES}") from None
    if not names:
        return np.asarray(embedder(image_bytes), np.float32)
    views = [image_bytes] + ([mirrored_jpeg(image_bytes)] if FLIP in names else [])
    if MULTISCALE in names:
        sizes = multiscale_sizes(int(embedder.image_size))
        parts = [embedder.sized(view, size) for view in views for size in sizes]
    else:
        parts = [embedder(view) for view in views]
    vectors = parts[0]
    for part in parts[1:]:  # float32, in view order (flip alone: the same arithmetic as before multiscale)
        vectors = vectors + part
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)
