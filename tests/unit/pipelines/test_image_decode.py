"""The image path on every bad input we can make: each is written or fails with the right reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipelines.images.errors import RowFailure
from pipelines.images.image import ImageConfig, process_image, target_size
from tests.pipeline import helpers


def decode(jpeg_bytes: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(jpeg_bytes))
    assert im.format == "JPEG"
    im.load()
    return im


def reason_of(data: bytes, cfg: ImageConfig = ImageConfig()) -> str:
    with pytest.raises(RowFailure) as e:
        process_image(data, cfg)
    return e.value.reason


def test_resizes_shorter_side_keeping_aspect():
    out, h, w = process_image(helpers.jpeg(1024, 768), ImageConfig(image_size=256))
    assert (w, h) == (341, 256)
    im = decode(out)
    assert im.size == (341, 256) and im.mode == "RGB"


def test_never_upscales():
    out, h, w = process_image(helpers.jpeg(200, 100), ImageConfig(image_size=256))
    assert (w, h) == (200, 100) == decode(out).size


def test_large_jpeg_uses_reduced_decode_and_keeps_the_picture():
    big = helpers.jpeg(2400, 1600, seed="big")
    out, h, w = process_image(big, ImageConfig(image_size=128))
    assert (w, h) == (192, 128)
    reference = Image.open(io.BytesIO(big)).convert("RGB").resize((192, 128), Image.Resampling.BILINEAR)
    got = decode(out)
    diff = sum(abs(a - b) for a, b in zip(got.getpixel((100, 64)), reference.getpixel((100, 64))))
    assert diff < 30


def test_zero_bytes():
    assert reason_of(b"") == "empty"


def test_html_served_as_jpg():
    assert reason_of(b"<!DOCTYPE html><html><body>404 Not Found</body></html>") == "not_an_image"


def test_truncated_jpeg():
    data = helpers.jpeg(640, 480, seed="t")
    assert reason_of(data[: len(data) // 2]) == "truncated"


def test_header_only_bomb_is_refused_before_decoding():
    data = helpers.bomb_jpeg(30000, 30000)
    assert len(data) < 2000
    assert reason_of(data) == "too_large"


def test_cmyk_jpeg_becomes_rgb():
    out, h, w = process_image(helpers.jpeg(300, 200, mode="CMYK"))
    im = decode(out)
    assert im.mode == "RGB" and (w, h) == im.size == (300, 200)


def test_png_with_alpha_is_composited_on_white():
    im = Image.new("RGBA", (100, 80), (255, 0, 0, 255))
    im.paste((0, 0, 0, 0), (50, 0, 100, 80))  # right half fully transparent (black underneath)
    out, h, w = process_image(helpers.encoded(im, "PNG"), ImageConfig(min_side=1))
    got = decode(out)
    assert got.mode == "RGB"
    r, g, b = got.getpixel((10, 40))
    assert r > 200 and g < 60 and b < 60
    assert min(got.getpixel((90, 40))) > 230  # transparent -> white, not black


def test_palette_gif():
    im = Image.new("P", (120, 90))
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    im.paste(1, (0, 0, 60, 90))
    out, h, w = process_image(helpers.encoded(im, "GIF"))
    got = decode(out)
    assert (w, h) == (120, 90) and got.mode == "RGB"
    assert got.getpixel((20, 45))[1] > 150 and got.getpixel((100, 45))[1] < 50


def test_webp_named_jpg_is_sniffed_from_bytes():
    webp = helpers.encoded(Image.new("RGB", (300, 300), (10, 120, 240)), "WEBP")
    out, h, w = process_image(webp)
    assert decode(out).size == (w, h) == (256, 256)


def test_webp_files_of_landmarks_mini(shared_dir):
    images = sorted((shared_dir / "data/landmarks-mini/images").rglob("*.jp*g"))
    webps = [p for p in images if p.read_bytes()[8:12] == b"WEBP"]
    assert len(webps) == 3
    for p in webps:
        out, h, w = process_image(p.read_bytes())
        assert min(h, w) <= 256 and decode(out).size == (w, h)


def test_exif_orientation_is_applied():
    out, h, w = process_image(helpers.exif_rotated_jpeg(400, 200, orientation=6), ImageConfig(image_size=100))
    assert (w, h) == (100, 200)  # portrait once upright
    got = decode(out)
    # Orientation 6 = rotate 90 clockwise to display: the left (red) half ends on top.
    top, bottom = got.getpixel((50, 20)), got.getpixel((50, 180))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_one_pixel_image_too_small_by_default_and_kept_when_allowed():
    one = helpers.encoded(Image.new("RGB", (1, 1), (5, 6, 7)), "PNG")
    assert reason_of(one) == "too_small"
    out, h, w = process_image(one, ImageConfig(min_side=1))
    assert (w, h) == (1, 1) == decode(out).size


def test_other_formats_are_refused():
    assert reason_of(helpers.encoded(Image.new("RGB", (64, 64)), "TIFF")) == "not_an_image"


def test_target_size():
    assert target_size(1024, 768, 256) == (341, 256)
    assert target_size(768, 1024, 256) == (256, 341)
    assert target_size(100, 50, 256) == (100, 50)


def test_reduced_decode_only_when_much_larger(monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(
        JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: calls.append(size) or real(self, mode, size)
    )
    process_image(helpers.jpeg(1024, 768), ImageConfig(image_size=256))
    assert calls == [(341, 256)]
    process_image(helpers.jpeg(400, 300), ImageConfig(image_size=256))
    assert calls == [(341, 256)]
