"""fetch(): schemes, relative paths, and retries only on transient HTTP failures."""

from __future__ import annotations

import pytest

from pipelines.sources import fetch
from pipelines.images.errors import RowFailure
from tests.pipeline.helpers import FaultServer

# Generous timeout: the loopback server shares a small, busy machine; slow-path tests set their own.
FAST = fetch.FetchConfig(timeout_s=2.0, retries=2, backoff_s=0.01)


@pytest.fixture(scope="module")
def server():
    with FaultServer(stall_s=1.5) as s:
        yield s


def failure(url: str, cfg: fetch.FetchConfig = FAST) -> str:
    with pytest.raises(RowFailure) as e:
        fetch.fetch(url, "", cfg)
    return e.value.reason


def test_local_relative_file_url_and_missing(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"abc")
    assert fetch.fetch("images/a.jpg", str(tmp_path)) == b"abc"
    assert fetch.fetch(f"file://{tmp_path}/images/a.jpg") == b"abc"
    assert fetch.fetch(str(tmp_path / "images" / "a.jpg"), "/elsewhere") == b"abc"
    assert failure("images/missing.jpg") == "not_found"
    with pytest.raises(RowFailure) as e:
        fetch.fetch("images/missing.jpg", str(tmp_path))
    assert e.value.reason == "not_found"
    assert failure("ftp://example.com/a.jpg") == "fetch_error"


def test_resolve():
    assert fetch.resolve("a/b.jpg", "gs://bkt/dir") == "gs://bkt/dir/a/b.jpg"
    assert fetch.resolve("https://h/x.jpg", "/base") == "https://h/x.jpg"
    assert fetch.resolve("a.jpg", "/base") == "/base/a.jpg"


def test_ok_and_redirect(server):
    assert fetch.fetch(server.url("img", "a")) == server.image("a")
    assert fetch.fetch(server.url("redirect", "b"), "", FAST) == server.image("b")


@pytest.mark.parametrize("status", ["404", "403", "410"])
def test_permanent_4xx_is_not_retried(server, status):
    url = server.url(status, f"p{status}")
    assert failure(url) == f"http_{status}"
    assert server.hits[f"/{status}/p{status}"] == 1


def test_5xx_then_ok_is_retried(server):
    assert fetch.fetch(server.url("flaky500", "c"), "", FAST) == server.image("c")
    assert server.hits["/flaky500/c"] == 2


def test_429_then_ok_is_retried(server):
    assert fetch.fetch(server.url("flaky429", "d"), "", FAST) == server.image("d")
    assert server.hits["/flaky429/d"] == 2


def test_persistent_5xx_uses_every_retry(server):
    assert failure(server.url("500", "e")) == "http_5xx"
    assert server.hits["/500/e"] == FAST.retries + 1


def test_slow_server_times_out_after_retries(server):
    cfg = fetch.FetchConfig(timeout_s=0.3, retries=1, backoff_s=0.01)
    assert failure(server.url("slow", "f"), cfg) == "timeout"
    assert server.hits["/slow/f"] == 2


def test_stalled_body_times_out(server):
    cfg = fetch.FetchConfig(timeout_s=0.3, retries=0, backoff_s=0.01)
    assert failure(server.url("stall", "g"), cfg) == "timeout"


def test_truncated_body(server):
    assert failure(server.url("truncated", "h")) == "truncated"
    assert server.hits["/truncated/h"] == FAST.retries + 1


def test_refused_connection_is_a_connection_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert failure(f"http://127.0.0.1:{port}/x.jpg") == "connection_error"


def test_body_over_the_limit(server):
    cfg = fetch.FetchConfig(timeout_s=1, retries=0, max_bytes=100)
    assert failure(server.url("img", "big"), cfg) == "too_large"
