"""Bytes of any common image -> an RGB JPEG whose shorter side is at most `image_size`.

The order matters for robustness and speed:
1. the format is sniffed from the bytes (never the file name), and only a few decoders are
   allowed, so e.g. a WebP named `.jpg` decodes and an HTML error page is `not_an_image`;
2. the declared size is checked before anything is decoded (decompression bombs: `too_large`);
3. a YCbCr or grey JPEG takes the fast path (`pipelines.images.fast_jpeg`: libjpeg-turbo decodes at the
   smallest DCT scale still >= the target, OpenCV resizes, EXIF orientation read from the header
   is applied, libjpeg-turbo encodes); anything it does not decode cleanly falls through to 4-6;
4. otherwise Pillow decodes, a JPEG much larger than the target at a reduced DCT scale (`draft`);
5. the image is fully decoded (`load()`): `verify()` alone passes truncated files;
6. EXIF orientation is applied, any mode becomes RGB (transparency over white), the shorter side
   is resized down to `image_size` (never up), and the result is re-encoded as JPEG.
TF-free: the indexer and demo may import `process_image`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import warnings
from typing import Tuple

from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.images import fast_jpeg
from pipelines.images.errors import RowFailure

# Decoders we accept; others (e.g. PSD, TIFF, EPS) are refused as not_an_image. The JPEG
# decoder also opens camera MPO files (format "MPO"), whose first picture is used.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
_ORIENTATION_TAG = 0x0112

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """Output size and limits. `max_pixels` is the bomb limit on the *declared* size."""

    image_size: int = 256
    min_side: int = 32
    max_pixels: int = 90_000_000
    jpeg_quality: int = 90


def target_size(width: int, height: int, image_size: int) -> Tuple[int, int]:
    """(w, h) with the shorter side `image_size`, aspect kept; the source size if already smaller."""
    short = min(width, height)
    if short <= image_size:
        return width, height
    scale = image_size / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(data: bytes) -> Image.Image:
    if not data:
        raise RowFailure("empty", "zero bytes")
    try:
        with warnings.catch_warnings():
            # We apply our own limit on the declared size below; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise RowFailure("too_large", str(e)) from e
    except UnidentifiedImageError as e:
        raise RowFailure("not_an_image", f"unrecognised bytes starting {data[:16]!r}") from e
    except (OSError, SyntaxError, ValueError) as e:  # a recognised header that is broken
        raise RowFailure("truncated", f"{type(e).__name__}: {e}") from e


def _load(im: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as e:
        raise RowFailure("too_large", str(e)) from e
    except (OSError, SyntaxError, EOFError) as e:
        # Pillow says "image file is truncated", "broken data stream", "unrecognized data stream".
        raise RowFailure("truncated", f"{type(e).__name__}: {e}") from e
    except Exception as e:
        raise RowFailure("decode_error", f"{type(e).__name__}: {e}") from e


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparent pixels become white rather than whatever colour they hide."""
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode.startswith("I;16") or im.mode == "I":
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright) from the already-parsed header; 1 when unreadable."""
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception as e:  # a corrupt EXIF block must not lose an otherwise good image
        _LOG.debug("ignoring unreadable EXIF orientation: %s", e)
        return 1


def _exif_transpose(im: Image.Image) -> Image.Image:
    """The image turned upright per its EXIF orientation (in place: no copy when already upright)."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as e:  # a corrupt EXIF block must not lose an otherwise good image
        _LOG.debug("ignoring unreadable EXIF orientation: %s", e)
    return im


def process_image(data: bytes, cfg: ImageConfig = ImageConfig()) -> Tuple[bytes, int, int]:
    """(jpeg bytes, height, width) of the resized RGB image, or raises `RowFailure`."""
    im = _open(data)
    width, height = im.size
    if width * height > cfg.max_pixels:
        raise RowFailure("too_large", f"declared {width}x{height} > {cfg.max_pixels} pixels")
    if min(width, height) < cfg.min_side:
        raise RowFailure("too_small", f"{width}x{height} below {cfg.min_side} pixels")
    out_w, out_h = target_size(width, height, cfg.image_size)
    if im.format in ("JPEG", "MPO") and min(width, height) >= 2 * cfg.image_size:
        # DCT-scaled decode to the smallest scale still >= the target (orientation-independent,
        # since the shorter side is the same before and after rotation).
        im.draft("RGB", (out_w, out_h))
    if fast_jpeg.eligible(im.format, im.mode):
        try:
            return fast_jpeg.process(data, (out_w, out_h), _orientation(im), cfg.jpeg_quality)
        except ValueError as e:  # e.g. data ending early: Pillow (drafted above) decides the reason
            _LOG.debug("fast JPEG path declined (%s): decoding with Pillow", e)
    _load(im)
    try:
        im = _to_rgb(_exif_transpose(im))
        w, h = target_size(im.size[0], im.size[1], cfg.image_size)
        if (w, h) != im.size:
            im = im.resize((w, h), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=cfg.jpeg_quality)
    except Exception as e:
        raise RowFailure("decode_error", f"{type(e).__name__}: {e}") from e
    return buf.getvalue(), im.size[1], im.size[0]
