"""Flip test-time augmentation: the mirror image reaches the model, and the two embeddings average."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from indexer.embedding import tta


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


def test_mirrored_jpeg_is_the_mirror_image():
    yy, xx = np.mgrid[0:24, 0:32]
    pixels = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)  # smooth, asymmetric
    mirrored = tf.io.decode_jpeg(tta.mirrored_jpeg([_png(pixels)])[0]).numpy().astype(np.int32)
    assert mirrored.shape == pixels.shape
    assert np.abs(mirrored - pixels[:, ::-1]).mean() < 2.0
    assert np.abs(mirrored - pixels).mean() > 20.0  # really mirrored


def test_flip_averages_the_image_and_its_mirror():
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[:, :2] = 200  # bright left half, dark right half
    pixels[:, 2:] = 50
    plain = tta.embed(HalvesEmbedder(), [_png(pixels)], "none")
    flipped = tta.embed(HalvesEmbedder(), [_png(pixels)], "flip")
    np.testing.assert_allclose(plain[0], np.array([200, 50]) / np.hypot(200, 50), atol=1e-6)
    np.testing.assert_allclose(flipped[0], [2 ** -0.5, 2 ** -0.5], atol=1e-2)  # symmetric (JPEG: ~1 level off)
    with pytest.raises(ValueError, match="augmentation"):
        tta.embed(HalvesEmbedder(), [_png(pixels)], "rotate")
