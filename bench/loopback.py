"""A keep-alive HTTP server on 127.0.0.1 serving files from memory, for benchmarks.

It runs in the benchmark's own process (threads), so its CPU time is never counted in the
measured process trees of the pipeline or of a peer; both fetch the same urls from it.
"""

from __future__ import annotations

import http.server
import threading
from typing import Dict, Tuple


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # keep the benchmark's output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.server.files.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    files: Dict[str, bytes]


def serve(files: Dict[str, bytes]) -> Tuple[http.server.ThreadingHTTPServer, str]:
    """(server, base url): GET base + path returns files[path] (paths start with "/")."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files = files
    threading.Thread(target=server.serve_forever, daemon=True, name="loopback-http").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
