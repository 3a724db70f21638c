"""Test-time augmentation of the embedding: `flip` averages an image's embedding with its mirror
image's (both unit vectors; the mean is normalised again).

The exported SavedModel takes encoded image bytes and preprocesses them in its graph
(trainer/contract.py), so the mirror image is passed to it re-encoded as a JPEG at quality 95
without chroma subsampling (mean pixel error under 1 level; PNG would be exact but measured ~7x
slower to encode, and its larger files slower to decode). Landmarks are mostly left-right
symmetric in what identifies them (a mirrored cathedral is still that cathedral), and training
already flips at random, so the two views agree on the landmark and average out view-specific
noise. It about doubles the embedding cost.
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
    """Embeddings [N, D] of a batch of encoded images with the given augmentation."""
    if mode not in MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {MODES}")
    vectors = embedder(image_bytes)
    if mode == "flip":
        vectors = vectors + embedder(mirrored_jpeg(image_bytes))
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)
