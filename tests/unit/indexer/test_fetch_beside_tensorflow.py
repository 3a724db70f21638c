"""`pipelines.fetch` works in a process that imported TensorFlow first (the indexer, the demo).

TensorFlow loads an older libcurl, beside which pycurl refuses to import; fetch must then use
its requests client instead of failing at import (the indexer imports fetch for query urls).
"""

from __future__ import annotations

import http.server
import threading

import tensorflow as tf  # first, as in the indexer

from pipelines import fetch

BODY = b"\xff\xd8 query image " * 300


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def test_fetch_over_http_after_tensorflow(monkeypatch):
    assert tf.__version__  # loaded (with its libcurl) before pipelines.fetch
    monkeypatch.setattr(fetch, "_local", threading.local())
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/q.jpg"
        assert fetch.fetch(url, "", fetch.FetchConfig(timeout_s=5, retries=1)) == BODY
    finally:
        srv.shutdown()
        srv.server_close()
