"""Training augmentation, split between the input host and the accelerator.

The host does only what must be done per image on the CPU (`host_crop`): pick a random resized
crop window and decode only that window (`decode_and_crop_jpeg`), as uint8. A batch's crops travel
padded into one uint8 tensor with their sizes (about the bytes of a uint8 299x299 image each from
341x256 records, a quarter of float32's), plus four jitter parameters per element drawn from the
batch's seed (`batch_params`).

The rest runs batched in the training step, before the backbone's own scaling (`on_device`): each
crop resized to the training size (`resize_crops`), then horizontal flip, brightness, contrast and
saturation jitter, each element by its own parameters (`jitter`), so training stays reproducible.
The exported model never sees any of it (it is not part of the model).

`host_train_image` is the former all-on-host path (`--augment=host`): the same crop windows, then a
resize and the same jitter per image on float32 with TensorFlow's stock ops. The two paths draw
from the same distribution (tests/unit/trainer/test_augment.py checks it); they differ only in the
resampling grid (corner-aligned here, half-pixel there: at most half a source pixel).
"""

from __future__ import annotations

import tensorflow as tf

BRIGHTNESS = 0.1 * 255.0  # max |delta| added to [0, 255] pixels
CONTRAST = (0.85, 1.15)
SATURATION = (0.85, 1.15)
PARAMS = 4  # flip (0/1), brightness delta, contrast factor, saturation factor


def _crop_window(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """[y, x, h, w] of a random resized crop: 25-100% of the area, aspect 3/4-4/3."""
    shape = tf.io.extract_jpeg_shape(encoded)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.25, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], crop[0], crop[1]])


def _decode_crop_resize(encoded: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """float32 [size, size, 3] in [0, 255]: only the crop window is decoded (records are JPEG by contract)."""
    image = tf.io.decode_and_crop_jpeg(encoded, _crop_window(encoded, seed), channels=3)
    return tf.image.resize(image, [size, size])


def host_crop(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The new host path: the random crop window of the JPEG, decoded alone, uint8 [h, w, 3] (the
    resize to the training size is batched on the device: `resize_crops`)."""
    return tf.io.decode_and_crop_jpeg(encoded, _crop_window(encoded, seed), channels=3)


def batch_params(seed: tf.Tensor, count: int) -> tf.Tensor:
    """float32 [count, PARAMS], one row per element of a batch, from the batch's seed: flip (0 or 1),
    brightness delta, contrast and saturation factors."""
    u = tf.random.stateless_uniform([count, PARAMS], seed)
    low = tf.constant([0.0, -BRIGHTNESS, CONTRAST[0], SATURATION[0]])
    high = tf.constant([1.0, BRIGHTNESS, CONTRAST[1], SATURATION[1]])
    flip = tf.round(u[:, :1])  # half of the elements
    return tf.concat([flip, (low + u * (high - low))[:, 1:]], axis=1)


def resize_crops(crops: tf.Tensor, sizes: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 crops padded into [B, H, W, 3], their sizes int32 [B, 2] -> float32 [B, size, size, 3]:
    each crop alone, resized bilinearly (corner-aligned sampling, never reading the padding)."""
    canvas = tf.cast(tf.shape(crops)[1:3] - 1, tf.float32)
    extent = tf.cast(sizes - 1, tf.float32) / tf.maximum(canvas, 1.0)
    boxes = tf.concat([tf.zeros_like(extent), extent], axis=1)
    return tf.image.crop_and_resize(crops, boxes, tf.range(tf.shape(crops)[0]), [size, size])


def jitter(images: tf.Tensor, params: tf.Tensor) -> tf.Tensor:
    """Batched jitter: [B, S, S, 3] in [0, 255] and float32 [B, PARAMS] -> float32 [B, S, S, 3] in
    [0, 255]. The same operations, in the same order, as `host_train_image` after its crop."""
    x = tf.cast(images, tf.float32)
    p = tf.reshape(tf.cast(params, tf.float32), [-1, 1, 1, PARAMS])
    flip, delta, contrast, saturation = (p[..., i : i + 1] for i in range(PARAMS))
    x = tf.where(flip > 0.5, tf.reverse(x, axis=[2]), x)
    x = x + delta
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = (x - mean) * contrast + mean
    hsv = tf.image.rgb_to_hsv(x)
    s = tf.clip_by_value(hsv[..., 1:2] * saturation, 0.0, 1.0)
    x = tf.image.hsv_to_rgb(tf.concat([hsv[..., :1], s, hsv[..., 2:]], axis=-1))
    return tf.clip_by_value(x, 0.0, 255.0)


def on_device(crops: tf.Tensor, sizes: tf.Tensor, params: tf.Tensor, size: int) -> tf.Tensor:
    """The training step's augmentation: resize each crop, then flip and colour jitter, all batched."""
    return jitter(resize_crops(crops, sizes, size), params)


def host_train_image(encoded: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """The former host path (`--augment=host`): float32 [size, size, 3], crop and jitter on the CPU."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    image = _decode_crop_resize(encoded, size, seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = tf.image.stateless_random_brightness(image, BRIGHTNESS, seeds[2])
    image = tf.image.stateless_random_contrast(image, *CONTRAST, seeds[3])
    image = tf.image.stateless_random_saturation(image, *SATURATION, seeds[4])
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([size, size, 3])
    return image
