"""The fast path for the common case: a YCbCr or greyscale JPEG -> a smaller JPEG.

libjpeg-turbo (through simplejpeg) decodes straight to the smallest of its M/8 DCT scales that
keeps both sides at least `DCT_MARGIN` x the target (1/2 for 1024x768 -> 341x256; Pillow's
`draft` only has 1/2, 1/4, 1/8, and no scaling under 2x). OpenCV shrinks the rest: bilinear
under 2x, area averaging above. The margin matters: decoding right down to the target (3/8
here) was 2.5% faster but further from a full decode + Lanczos resize on the landmarks-mini
photos (mean abs 4.6 levels, against 4.1 with the margin and 3.8 for Pillow's path), since a
truncated 8x8 DCT rings on detailed photos and the resize then has nothing left to smooth. The
result is turned upright by the EXIF orientation the caller read, and encoded by libjpeg-turbo
(4:2:0, like Pillow's default). Figures and the libraries compared: docs/preprocess.md.

`pipelines.images.image` decides what comes here (format, mode, declared size, orientation: it parses
the header with Pillow first), and falls back to Pillow whenever this raises `ValueError`:
libjpeg-turbo runs in strict mode, so a warning such as "Premature end of JPEG file" is an
error here, and Pillow's own decode then gives the row its reason (`truncated`, ...).
CMYK/YCCK JPEGs and every other format never come here.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np
import simplejpeg

# The pipeline runs one image per thread (and process); OpenCV's own thread pool would only
# oversubscribe the cores.
cv2.setNumThreads(1)

# Decode to at least this multiple of the target size (see above).
DCT_MARGIN = 1.25

# Pillow modes of the JPEGs libjpeg-turbo can turn into RGB exactly as Pillow would.
FAST_MODES = ("RGB", "L")

# EXIF orientation -> the operation that turns the stored pixels upright (as
# `PIL.ImageOps.exif_transpose`: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
# clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
_ORIENT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def eligible(image_format: str, mode: str) -> bool:
    """True for the JPEGs this path handles (camera MPO files decode as their first picture)."""
    return image_format in ("JPEG", "MPO") and mode in FAST_MODES


def decode(data: bytes, width: int, height: int) -> np.ndarray:
    """HxWx3 RGB pixels at the smallest DCT scale keeping both sides >= `DCT_MARGIN` x the target
    (or full size, never larger)."""
    return simplejpeg.decode_jpeg(data, "RGB", min_height=math.ceil(height * DCT_MARGIN),
                                  min_width=math.ceil(width * DCT_MARGIN), strict=True)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """`pixels` shrunk to width x height: bilinear under 2x (DCT scaling did the rest), else area."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    ratio = min(pixels.shape[1] / width, pixels.shape[0] / height)
    interpolation = cv2.INTER_LINEAR if ratio < 2 else cv2.INTER_AREA
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels turned upright per an EXIF orientation (1 or an unknown value: unchanged)."""
    op = _ORIENT.get(orientation)
    return pixels if op is None else op(pixels)


def encode(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, 4:2:0 chroma (Pillow's default), of C-contiguous RGB pixels."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality, "RGB", "420")


def process(data: bytes, size: Tuple[int, int], orientation: int, quality: int) -> Tuple[bytes, int, int]:
    """(jpeg, height, width) of `data` resized to `size` (w, h, as stored) and turned upright.

    Raises `ValueError` for anything libjpeg-turbo does not decode cleanly.
    """
    width, height = size
    pixels = orient(resize(decode(data, width, height), width, height), orientation)
    return encode(pixels, quality), pixels.shape[0], pixels.shape[1]
