"""Fixtures shared by the pipeline tests."""

import socket

import pytest

from pipelines.sources import storage


@pytest.fixture
def gcs(monkeypatch):
    """A gcp-storage-emulator on a free loopback port with bucket `bkt`; storage's client bound to it."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="bkt")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(storage, "_client", None)  # a client bound to this emulator
    yield
    monkeypatch.setattr(storage, "_client", None)
    server.stop()
