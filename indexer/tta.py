"""Test-time augmentation of the embedding: `flip` averages an image's embedding with its mirror
image's (both unit vectors; the mean is normalised again).

The exported SavedModel takes encoded image bytes and preprocesses them in its graph
(trainer/contract.py), so the mirror image is passed to it as a PNG: lossless, and decoded by the
same `decode_image`. Landmarks are mostly left-right symmetric in what identifies them (a mirrored
cathedral is still that cathedral), and training already flips at random, so the two views agree on
the landmark and average out view-specific noise. It doubles the embedding cost.
"""

from __future__ import annotations

import functools

import numpy as np

MODES = ("none", "flip")


@functools.lru_cache(maxsize=None)
def _mirror_fn():
    """The traced mirror function (built once: an eager map over a batch is several times slower)."""
    import tensorflow as tf

    def one(b):
        image = tf.io.decode_image(b, channels=3, expand_animations=False)
        return tf.io.encode_png(tf.image.flip_left_right(image))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def mirror(image_bytes):
        return tf.map_fn(one, image_bytes, fn_output_signature=tf.string)

    return mirror


def mirrored_png(image_bytes):
    """tf.string [N] of encoded images -> tf.string [N] of their left-right mirror images as PNG."""
    import tensorflow as tf

    return _mirror_fn()(tf.convert_to_tensor(image_bytes, tf.string))


def embed(embedder, image_bytes, mode: str = "none") -> np.ndarray:
    """Embeddings [N, D] of a batch of encoded images with the given augmentation."""
    if mode not in MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {MODES}")
    vectors = embedder(image_bytes)
    if mode == "flip":
        vectors = vectors + embedder(mirrored_png(image_bytes))
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)
