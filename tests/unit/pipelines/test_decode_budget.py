"""The process-wide decode budget: first come first served, an oversized image runs alone, and
the cost read from a header is what the decoder will allocate (issue 14.10)."""

from __future__ import annotations

import io
import threading

from PIL import Image

from pipelines.images.decode_budget import DecodeBudget, _declared, decoded_pixels
from tests.pipeline import helpers


def test_waiting_large_request_is_not_overtaken_and_runs_alone():
    budget = DecodeBudget(10)
    order, started = [], {}

    def take(name: str, pixels: int, release: threading.Event) -> None:
        with budget.hold(pixels):
            order.append(name)
            started[name].set()
            release.wait(10)

    def launch(name: str, pixels: int) -> threading.Event:
        release, started[name] = threading.Event(), threading.Event()
        threading.Thread(target=take, args=(name, pixels, release), daemon=True).start()
        return release

    release_a = launch("a", 6)
    assert started["a"].wait(10)
    release_big = launch("big", 1000)  # over the whole budget: waits for all of it
    while not budget.waiting:  # "big" is queued before "c" asks
        threading.Event().wait(0.01)
    release_c = launch("c", 3)  # would fit beside "a", but "big" asked first
    assert not started["c"].wait(0.3)
    release_a.set()
    assert started["big"].wait(10)
    assert budget.used == 10 and not started["c"].is_set()  # big runs alone
    release_big.set()
    assert started["c"].wait(10)
    release_c.set()
    assert order == ["a", "big", "c"]


def test_cost_is_what_the_decoder_allocates():
    small = helpers.encoded(Image.new("RGB", (300, 200)), "PNG")
    assert decoded_pixels(small, 256, 90_000_000, 32) == 300 * 200
    big_jpeg = helpers.jpeg(2400, 1600)  # decoded at 1/4 scale for a 256 px target
    assert decoded_pixels(big_jpeg, 256, 90_000_000, 32) == 600 * 400
    assert decoded_pixels(helpers.bomb_jpeg(30000, 30000), 256, 90_000_000, 32) == 0  # refused before decoding
    assert decoded_pixels(b"<html>", 256, 90_000_000, 32) == 0
    assert decoded_pixels(helpers.jpeg(20, 20), 256, 90_000_000, 32) == 0  # too small: refused


def test_jpeg_header_read_by_libjpeg_turbo_matches_pillows():
    jpegs = [helpers.jpeg(1300, 900, progressive=True), helpers.jpeg(800, 600, mode="CMYK"),
             helpers.jpeg(700, 500, mode="L"), helpers.exif_rotated_jpeg(), helpers.jpeg(1024, 768)[:3000]]
    for data in jpegs:
        with Image.open(io.BytesIO(data)) as im:
            assert _declared(data) == (*im.size, im.format)
