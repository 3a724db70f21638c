"""Test inputs for the preprocessing pipeline: image bytes of every awkward kind, and a loopback
HTTP server that injects faults by path (also used by `bench/soak_preprocess.py`).

Fault paths (`KIND` is the first path segment, the rest names the image):
  /img/ID          200 with a JPEG          /html/ID      200 with an HTML page
  /404|403|410/ID  that status, forever     /500/ID       500 forever
  /flaky500/ID     500 once, then 200        /flaky429/ID  429 (Retry-After: 0) once, then 200
  /slow/ID         no answer for `stall_s`   /stall/ID     headers and half the body, then silence
  /truncated/ID    Content-Length of the whole JPEG, half of it sent, connection closed
  /redirect/ID     302 to /img/ID
Every request is counted and timed per path (`hits`, `times`), so tests can check what was
retried and how long the client waited between tries. `pool` > 0 serves one of that many
distinct images per name (cheap for thousands of urls).
"""

from __future__ import annotations

import collections
import hashlib
import http.server
import io
import struct
import sys
import threading
import time
from typing import Dict, List, Optional

from PIL import Image


def jpeg(width: int = 320, height: int = 240, seed: str = "x", mode: str = "RGB", **save) -> bytes:
    """A JPEG with a colour gradient derived from `seed` (distinct images for distinct seeds)."""
    d = hashlib.sha256(seed.encode()).digest()
    im = Image.linear_gradient("L").resize((width, height))
    rgb = Image.merge("RGB", [im.point(lambda v, k=k: (v + d[k]) % 256) for k in range(3)])
    buf = io.BytesIO()
    rgb.convert(mode).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def encoded(im: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def bomb_jpeg(width: int = 30000, height: int = 30000) -> bytes:
    """A small JPEG whose header declares `width` x `height` (header-only decompression bomb)."""
    data = bytearray(jpeg(16, 16))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # SOFn: precision, height, width
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def exif_rotated_jpeg(width: int = 400, height: int = 200, orientation: int = 6) -> bytes:
    """A landscape JPEG whose EXIF says "rotate 90" (orientation 6): upright it is portrait.
    The left half is red, the right half blue, so the rotation direction is checkable."""
    im = Image.new("RGB", (width, height), (255, 0, 0))
    im.paste((0, 0, 255), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(im, "JPEG", quality=95, exif=exif.tobytes())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "FaultServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "image/jpeg", headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        path = self.path.split("?")[0]
        with srv.lock:
            srv.hits[path] += 1
            srv.times[path].append(time.monotonic())
            hit = srv.hits[path]
        parts = path.strip("/").split("/", 1)
        kind, name = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
        body = srv.image(name)
        try:
            if kind == "img":
                self._send(200, body)
            elif kind == "html":
                self._send(200, b"<html><body>Not found, but 200</body></html>", "text/html")
            elif kind in ("404", "403", "410", "500"):
                self._send(int(kind), b"no", "text/plain")
            elif kind == "flaky500":
                self._send(500, b"busy", "text/plain") if hit == 1 else self._send(200, body)
            elif kind == "flaky429":
                if hit == 1:
                    self._send(429, b"slow down", "text/plain", {"Retry-After": "0"})
                else:
                    self._send(200, body)
            elif kind == "slow":
                time.sleep(srv.stall_s)
                self._send(200, body)
            elif kind == "stall":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                time.sleep(srv.stall_s)
                self.close_connection = True
            elif kind == "truncated":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif kind == "redirect":
                self._send(302, b"", "text/plain", {"Location": f"/img/{name}"})
            else:
                self._send(404, b"unknown fault", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass


class FaultServer(http.server.ThreadingHTTPServer):
    """Loopback-only HTTP server with injected faults; use as a context manager."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, stall_s: float = 3.0, image_size=(320, 240), pool: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stall_s = stall_s
        self.image_size = image_size
        self.pool = pool
        self.hits: Dict[str, int] = collections.Counter()
        self.times: Dict[str, List[float]] = collections.defaultdict(list)
        self.lock = threading.Lock()
        self._images: Dict[str, bytes] = {}
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        """Clients hanging up on slow or stalled answers is the point; report anything else."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def image(self, name: str) -> bytes:
        if self.pool:
            name = f"pool{int(hashlib.sha256(name.encode()).hexdigest(), 16) % self.pool}"
        with self.lock:
            if name not in self._images:
                self._images[name] = jpeg(*self.image_size, seed=name)
            return self._images[name]

    def url(self, kind: str, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{kind}/{name}"

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
