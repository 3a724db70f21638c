"""A process-wide budget of decoded pixels, so concurrent decodes cannot take a worker's memory.

`--max_pixels` bounds one image; it does not bound a worker that decodes `--fetch_threads` images
at once: 16 small PNGs each declaring 88 Mpx (under the limit) peaked at 5.7 GB resident. So
each decode first takes its pixel count from one budget shared by the threads of a process and
gives it back when done; a decode that does not fit waits. An image larger than the whole budget
waits until the budget is free and then runs alone, so it is slow, never refused. The cost is
read from the header alone (cheap: no pixel is decoded) and is what the decoder will allocate:
the declared size, reduced by the DCT scale a large JPEG is decoded at; images the decoder will
refuse before allocating (over `max_pixels`, under `min_side`, unreadable headers) cost nothing.

Holding decodes back is not enough on glibc: each decoding thread gets its own malloc arena,
and freed image buffers stay in it (glibc raises its mmap threshold after the first large free,
so later buffers come from the arenas): measured, 8 threads decoding 12 Mpx PNGs one at a time
still grew the process by 775 MB, against 150 MB for one thread. So the budget also pins the
mmap threshold at `MMAP_THRESHOLD` bytes: image-sized buffers are mapped and unmapped, and
return to the system when freed (150 MB for 8 threads); small allocations are unaffected.

The budget is `DEFAULT_MPX` million pixels per process (about 10 bytes of peak memory per pixel:
RGBA decode, RGB copy, resize), or `PIPELINES_DECODE_BUDGET_MPX` from the environment.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import io
import logging
import os
import threading
import warnings
from typing import Deque, Iterator, Optional, Tuple

import simplejpeg
from PIL import Image

from pipelines.images.image import ALLOWED_FORMATS

DEFAULT_MPX = 64.0
ENV = "PIPELINES_DECODE_BUDGET_MPX"
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number

_LOG = logging.getLogger(__name__)
_JPEG_SCALES = (8, 4, 2)


class DecodeBudget:
    """A counting budget of pixels; `hold(n)` blocks until n (capped at the whole budget) fit.

    First come, first served: a request never overtakes an earlier one that is still waiting,
    so a large image waiting for the whole budget cannot be starved by a stream of small ones.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"decode budget must be >= 1 pixel, not {capacity}")
        self.capacity = capacity
        self._used = 0
        self._queue: Deque[object] = collections.deque()
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    @property
    def waiting(self) -> int:
        """Requests queued and not yet holding their pixels."""
        with self._cond:
            return len(self._queue)

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(max(int(pixels), 0), self.capacity)
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            self._cond.wait_for(lambda: self._queue[0] is ticket and self._used + need <= self.capacity)
            self._queue.popleft()
            self._used += need
            self._cond.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._cond:
                self._used -= need
                self._cond.notify_all()


def _declared(data: bytes) -> Optional[Tuple[int, int, str]]:
    """(width, height, format) from the header alone, or None when it is unreadable or refused.

    A JPEG's comes from libjpeg-turbo's header parser (~2 us; Pillow's open took ~90 us per image,
    about 1.5% of the whole per-image cost); anything else, or a JPEG header libjpeg-turbo cannot
    read, from Pillow, restricted to the formats `pipelines.images.image` accepts.
    """
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return width, height, "JPEG"
    except ValueError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:  # reads the header only
                return im.size[0], im.size[1], im.format
    except Exception:  # not an image, a bomb Pillow refuses, a broken header: no decode happens
        return None


def decoded_pixels(data: bytes, image_size: int, max_pixels: int, min_side: int) -> int:
    """Pixels the decoder will allocate for `data` (0 when it will refuse the image first)."""
    declared = _declared(data)
    if declared is None:
        return 0
    width, height, fmt = declared
    if width * height > max_pixels or min(width, height) < min_side:
        return 0
    short = min(width, height)
    if fmt in ("JPEG", "MPO") and short >= 2 * image_size:
        # The decoder's DCT scaling: the largest 1/s still at least the target size.
        scale = next((s for s in _JPEG_SCALES if short // s >= image_size), 1)
        return -(-width // scale) * -(-height // scale)
    return width * height


_shared: Optional[DecodeBudget] = None
_shared_lock = threading.Lock()


def _return_large_buffers_to_the_system() -> None:
    """Pin glibc's mmap threshold (see the module docstring); a no-op on other C libraries."""
    try:
        if not ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
            _LOG.debug("mallopt(M_MMAP_THRESHOLD) refused")
    except (AttributeError, OSError):  # not glibc
        pass


def shared() -> DecodeBudget:
    """The budget of this process (created on first use, sized from the environment)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _return_large_buffers_to_the_system()
            mpx = float(os.environ.get(ENV) or DEFAULT_MPX)
            _shared = DecodeBudget(max(1, int(mpx * 1_000_000)))
        return _shared
