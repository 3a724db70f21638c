"""The libjpeg-turbo fast path against the Pillow path it replaces: same shapes, near pixels,
same orientation, same failure reasons."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.images import fast_jpeg, image
from pipelines.images.errors import RowFailure
from pipelines.images.image import ImageConfig, process_image
from tests.pipeline import helpers


def photo(width: int, height: int, seed: int = 0, **save) -> bytes:
    """A JPEG with smooth colour fields, hard edges and noise (like a photo, unlike a gradient)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    field[:, : width // 3] *= 0.5  # an edge
    pixels = np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)
    return helpers.encoded(Image.fromarray(pixels), "JPEG", quality=92, **save)


def pixels(jpeg: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG" and im.mode == "RGB"
    return np.asarray(im, dtype=np.float32)


@pytest.fixture
def pillow_only(monkeypatch):
    """process_image with the fast path switched off (today's Pillow path)."""

    def run(data: bytes, cfg: ImageConfig = ImageConfig()):
        with monkeypatch.context() as m:
            m.setattr(fast_jpeg, "eligible", lambda fmt, mode: False)
            return process_image(data, cfg)

    return run


@pytest.fixture
def fast_calls(monkeypatch):
    """Records every call that reaches the fast path."""
    calls = []
    real = fast_jpeg.process
    monkeypatch.setattr(fast_jpeg, "process", lambda *a: calls.append(a[1]) or real(*a))
    return calls


@pytest.mark.parametrize(
    "width,height,save",
    [(1024, 768, {}), (768, 1024, {}), (400, 300, {}), (2000, 300, {}), (1024, 768, {"progressive": True}),
     (1024, 768, {"subsampling": 0})],
)
def test_fast_path_matches_pillow_path(width, height, save, pillow_only, fast_calls):
    data = photo(width, height, seed=width + height, **save)
    fast, h, w = process_image(data)
    assert len(fast_calls) == 1
    slow, h0, w0 = pillow_only(data)
    assert (h, w) == (h0, w0) == pixels(fast).shape[:2]
    assert min(h, w) == 256
    diff = np.abs(pixels(fast) - pixels(slow))
    assert diff.mean() < 2.5, diff.mean()  # same picture; both are q90 JPEGs of slightly different resizes


def test_greyscale_jpeg_comes_out_rgb(pillow_only, fast_calls):
    data = helpers.encoded(Image.open(io.BytesIO(photo(600, 400))).convert("L"), "JPEG", quality=90)
    fast, h, w = process_image(data)
    assert fast_calls == [(384, 256)]
    got, ref = pixels(fast), pixels(pillow_only(data)[0])
    assert got.shape == ref.shape == (256, 384, 3)
    assert np.abs(got - ref).mean() < 2.5
    assert np.abs(got[..., 0] - got[..., 2]).max() < 8  # still grey


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_the_fast_path_matches_pillow(orientation, pillow_only, fast_calls):
    # Four distinct quadrants, so any wrong flip or rotation moves a colour.
    im = Image.new("RGB", (600, 300), (255, 0, 0))
    im.paste((0, 0, 255), (300, 0, 600, 150))
    im.paste((0, 255, 0), (0, 150, 300, 300))
    im.paste((255, 255, 255), (300, 150, 600, 300))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = helpers.encoded(im, "JPEG", quality=95, exif=exif.tobytes())
    fast, h, w = process_image(data, ImageConfig(image_size=100))
    assert len(fast_calls) == 1
    slow, h0, w0 = pillow_only(data, ImageConfig(image_size=100))
    assert (h, w) == (h0, w0) == ((100, 200) if orientation <= 4 else (200, 100))
    assert np.abs(pixels(fast) - pixels(slow)).mean() < 3


def test_corrupt_exif_is_ignored(fast_calls):
    data = helpers.encoded(Image.open(io.BytesIO(photo(400, 300))), "JPEG", exif=b"Exif\x00\x00garbage-not-tiff")
    out, h, w = process_image(data)
    assert (w, h) == (341, 256) and len(fast_calls) == 1


def test_decode_uses_the_smallest_dct_scale_keeping_the_margin():
    assert fast_jpeg.DCT_MARGIN == 1.25
    assert fast_jpeg.decode(photo(1024, 768), 341, 256).shape == (384, 512, 3)  # 1/2 (3/8 = 288 < 320)
    assert fast_jpeg.decode(photo(2048, 1536), 341, 256).shape == (384, 512, 3)  # 1/4
    assert fast_jpeg.decode(photo(1600, 1200), 341, 256).shape == (450, 600, 3)  # 3/8 (2/8 = 300 < 320)
    assert fast_jpeg.decode(photo(400, 300), 341, 256).shape == (300, 400, 3)  # full size, never up


def test_resize_is_area_averaging_beyond_2x():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    block_means = noise.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))  # every source pixel counts
    assert np.abs(fast_jpeg.resize(noise, 16, 16) - block_means).max() <= 1
    assert fast_jpeg.resize(noise, 64, 64) is noise


@pytest.mark.parametrize("save", [{}, {"progressive": True}])
def test_truncated_jpeg_falls_back_and_fails_as_truncated(save, fast_calls):
    data = photo(640, 480, **save)
    with pytest.raises(RowFailure) as e:
        process_image(data[: len(data) // 2])
    assert e.value.reason == "truncated" and len(fast_calls) == 1


def test_cmyk_and_other_formats_skip_the_fast_path(fast_calls):
    process_image(helpers.jpeg(300, 200, mode="CMYK"))
    process_image(helpers.encoded(Image.new("RGB", (300, 300), (1, 2, 3)), "PNG"))
    process_image(helpers.encoded(Image.new("RGB", (300, 300), (1, 2, 3)), "WEBP"))
    assert fast_calls == []


def test_bomb_is_refused_before_the_fast_path(fast_calls):
    with pytest.raises(RowFailure) as e:
        process_image(helpers.bomb_jpeg(30000, 30000))
    assert e.value.reason == "too_large" and fast_calls == []
    assert image.ImageConfig().max_pixels < 30000 * 30000
