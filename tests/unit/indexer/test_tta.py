"""Flip test-time augmentation: the mirror image reaches the model, and the two embeddings average."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from indexer import tta


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class HalvesEmbedder:
    """Embeds an image as the unit vector (mean of its left half, mean of its right half)."""

    def __call__(self, image_bytes) -> np.ndarray:
        out = []
        for b in tf.convert_to_tensor(image_bytes).numpy():
            img = tf.io.decode_image(b, channels=1).numpy()[..., 0].astype(np.float64)
            v = np.array([img[:, : img.shape[1] // 2].mean(), img[:, img.shape[1] // 2:].mean()])
            out.append(v / np.linalg.norm(v))
        return np.array(out, np.float32)


def test_mirrored_png_is_the_exact_mirror_image():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mirrored = tf.io.decode_png(tta.mirrored_png([_png(pixels)])[0]).numpy()
    np.testing.assert_array_equal(mirrored, pixels[:, ::-1])


def test_flip_averages_the_image_and_its_mirror():
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[:, :2] = 200  # bright left half, dark right half
    pixels[:, 2:] = 50
    plain = tta.embed(HalvesEmbedder(), [_png(pixels)], "none")
    flipped = tta.embed(HalvesEmbedder(), [_png(pixels)], "flip")
    np.testing.assert_allclose(plain[0], np.array([200, 50]) / np.hypot(200, 50), atol=1e-6)
    np.testing.assert_allclose(flipped[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)  # symmetric: halves agree
    with pytest.raises(ValueError, match="augmentation"):
        tta.embed(HalvesEmbedder(), [_png(pixels)], "rotate")
