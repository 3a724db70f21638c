"""The split augmentation (trainer/input/augment.py): the device path draws from the former host path's
distribution, and its batched jitter is TensorFlow's per-image jitter."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from trainer.input import augment  # noqa: E402

N = 1000  # elements per path
SIZE = 40


def _jpeg(image: np.ndarray) -> bytes:
    return tf.io.encode_jpeg(image.astype(np.uint8), quality=95).numpy()


def _scene(seed: int) -> bytes:
    """A colourful 64x48 photo-like image: smooth colour ramps plus texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    ramps = np.stack([xx / 64 * 120, yy / 48 * 90, np.sin(xx / 5 + yy / 7) * 40], axis=-1)
    return _jpeg(np.clip(base + ramps + rng.normal(0, 10, (48, 64, 3)), 0, 255))


def _ramp() -> bytes:
    """Grey, dark on the left, bright on the right: any crop keeps the direction, only a flip reverses it."""
    row = np.linspace(20, 235, 64)
    return _jpeg(np.repeat(np.tile(row[None, :, None], (48, 1, 1)), 3, axis=2))


def _old_path(encoded: list) -> np.ndarray:
    ds = tf.data.Dataset.from_tensor_slices(encoded).enumerate().map(
        lambda i, e: augment.host_train_image(e, SIZE, tf.stack([tf.constant(7, tf.int64), i])))
    return np.concatenate([b.numpy() for b in ds.batch(250)])


def _new_path(encoded: list, jitter: bool = True) -> np.ndarray:
    """trainer.input.data's device path: host crops in padded batches, then the batched resize and jitter."""
    ds = tf.data.Dataset.from_tensor_slices(encoded).enumerate().map(
        lambda i, e: augment.host_crop(e, tf.stack([tf.constant(8, tf.int64), i])))
    ds = ds.map(lambda image: (image, tf.shape(image)[:2])).padded_batch(250)
    out = []
    for n, (crops, sizes) in enumerate(ds):
        params = augment.batch_params(tf.constant([9, n], tf.int64), 250)
        out.append(augment.on_device(crops, sizes, params, SIZE) if jitter else augment.resize_crops(crops, sizes, SIZE))
    return np.concatenate([b.numpy() for b in out])


def _stats(images: np.ndarray):
    """Per channel: mean and std over every pixel, and the spread of the per-image means."""
    return images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2)), images.mean(axis=(1, 2)).std(axis=0)


def test_batched_jitter_equals_tensorflows_per_image_ops():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (6, 24, 24, 3)).astype(np.uint8)
    params = np.array([[i % 2, rng.uniform(-25.5, 25.5), rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)]
                       for i in range(6)], np.float32)
    got = augment.jitter(images, params).numpy()
    for image, (flip, delta, contrast, saturation), out in zip(images, params, got):
        x = tf.cast(image, tf.float32)
        x = tf.image.flip_left_right(x) if flip else x
        x = tf.image.adjust_saturation(tf.image.adjust_contrast(tf.image.adjust_brightness(x, delta), contrast),
                                       saturation)
        np.testing.assert_allclose(out, tf.clip_by_value(x, 0, 255).numpy(), atol=1e-2)


def test_device_path_matches_the_host_path_distribution():
    # One scene, so that the spread comes from the crops and the jitter, not from the content.
    encoded = [_scene(0)] * N
    old_mean, old_std, old_spread = _stats(_old_path(encoded))
    new_mean, new_std, new_spread = _stats(_new_path(encoded))
    np.testing.assert_allclose(new_mean, old_mean, atol=3.0)  # about 3 standard errors of the difference
    np.testing.assert_allclose(new_std, old_std, atol=1.5)
    np.testing.assert_allclose(new_spread, old_spread, atol=1.5)
    # The tolerances can tell: without the jitter the pixels' spread is clearly narrower.
    _, crop_std, crop_spread = _stats(_new_path(encoded, jitter=False))
    assert np.all(old_std - crop_std > 3.0) and np.all(old_spread - crop_spread > 3.0), (crop_std, crop_spread)


def test_both_paths_flip_half_of_the_images():
    encoded = [_ramp()] * N
    for images in (_old_path(encoded), _new_path(encoded)):
        half = SIZE // 2
        flipped = images[:, :, :half].mean(axis=(1, 2, 3)) > images[:, :, half:].mean(axis=(1, 2, 3))
        assert abs(flipped.mean() - 0.5) < 0.05, flipped.mean()


def test_each_crop_is_resized_alone_from_its_padded_batch():
    rng = np.random.default_rng(1)
    crops = [rng.uniform(0, 255, shape).astype(np.uint8) for shape in ((30, 20, 3), (12, 40, 3))]
    padded = np.zeros((2, 30, 40, 3), np.uint8)
    for i, crop in enumerate(crops):
        padded[i, : crop.shape[0], : crop.shape[1]] = crop
    got = augment.resize_crops(padded, np.array([c.shape[:2] for c in crops], np.int32), 16).numpy()
    for crop, out in zip(crops, got):
        alone = tf.compat.v1.image.resize_bilinear(crop[None].astype(np.float32), [16, 16], align_corners=True)
        np.testing.assert_allclose(out, alone[0].numpy(), atol=1e-3)  # the zero padding never leaks in


def test_parameters_are_a_function_of_the_seed():
    a = augment.batch_params(tf.constant([3, 4], tf.int64), 500).numpy()
    b = augment.batch_params(tf.constant([3, 4], tf.int64), 500).numpy()
    c = augment.batch_params(tf.constant([3, 5], tf.int64), 500).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and set(a[:, 0].tolist()) == {0.0, 1.0}
    assert np.abs(a[:, 1]).max() <= augment.BRIGHTNESS and 0.85 <= a[:, 2:].min() and a[:, 2:].max() <= 1.15
