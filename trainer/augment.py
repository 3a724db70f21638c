"""Training augmentation, split between the input host and the accelerator.

The host does only what must be done per image on the CPU (`host_crop`): pick a random resized
crop window, decode only that window (`decode_and_crop_jpeg`), resize it to the training size and
keep it as uint8 (a quarter of float32's bytes through tf.data, the tf.data service and PCIe). It
also draws the element's jitter parameters (`draw_params`: four numbers from the element's seed).

The rest runs batched in the training step, before the backbone's own scaling (`on_device`):
horizontal flip, brightness, contrast and saturation jitter, each element by its own parameters,
so training stays reproducible. The exported model never sees it (it is not part of the model).

`host_train_image` is the former all-on-host path (`--augment=host`): the same crop, then the same
jitter per image on float32 with TensorFlow's stock ops. The two paths draw from the same
distribution (tests/unit/trainer/test_augment.py checks it).
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


def host_crop(encoded: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """The new host path: uint8 [size, size, 3], the random resized crop only."""
    image = tf.cast(tf.round(_decode_crop_resize(encoded, size, seed)), tf.uint8)  # resize stays in [0, 255]
    image.set_shape([size, size, 3])
    return image


def draw_params(seed: tf.Tensor) -> tf.Tensor:
    """float32 [PARAMS] for one element: flip (0 or 1), brightness delta, contrast and saturation factors."""
    u = tf.random.stateless_uniform([PARAMS], seed)
    low = tf.constant([0.0, -BRIGHTNESS, CONTRAST[0], SATURATION[0]])
    high = tf.constant([1.0, BRIGHTNESS, CONTRAST[1], SATURATION[1]])
    params = low + u * (high - low)
    return tf.tensor_scatter_nd_update(params, [[0]], [tf.round(u[0])])  # flip in half of the elements


def on_device(images: tf.Tensor, params: tf.Tensor) -> tf.Tensor:
    """Batched jitter: uint8 (or float) [B, S, S, 3] and float32 [B, PARAMS] -> float32 [B, S, S, 3] in
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


def device_example(encoded: tf.Tensor, size: int, seed: tf.Tensor):
    """The new host path for one element: (uint8 crop, jitter parameters), from one seed."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return host_crop(encoded, size, seeds[0]), draw_params(seeds[1])
