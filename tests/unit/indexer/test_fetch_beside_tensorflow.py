"""`pipelines.sources.fetch` works in a process that imported TensorFlow first (the indexer, the demo).

TensorFlow loads an older libcurl, beside which pycurl refuses to import; fetch must then use
its requests client instead of failing at import (the indexer imports fetch for query urls).
"""

from __future__ import annotations

import threading

import tensorflow as tf  # first, as in the indexer

from pipelines.sources import fetch
from tests.pipeline.helpers import FaultServer


def test_fetch_over_http_after_tensorflow(monkeypatch):
    assert tf.__version__  # loaded (with its libcurl) before pipelines.sources.fetch
    monkeypatch.setattr(fetch, "_local", threading.local())
    with FaultServer() as srv:
        assert fetch.fetch(srv.url("img", "q"), "", fetch.FetchConfig(timeout_s=5, retries=1)) == srv.image("q")
