"""One HTTP(S) GET through libcurl (pycurl): the default client of `pipelines.sources.fetch`.

Why libcurl: fetching a 300 KB image from 127.0.0.1 cost 931 us of CPU through urllib3 (Python
work per received chunk, header parsing, several copies of the body) and 399 us through libcurl
(measured alternating, docs/preprocess.md), which also holds no GIL while it connects, waits and
reads, so the decode threads beside it keep the cores. libcurl also does
what `fetch` needs natively: a whole-download deadline (`TIMEOUT_MS`), bounded
redirects restricted to http(s), gzip/deflate, keep-alive on a reused handle, TLS checked
against a given CA bundle.

This module knows libcurl, not our failure reasons: `get` returns the final response or raises
`CurlError` with libcurl's code; `pipelines.sources.fetch` decides what each means (timeout, truncated,
too_large, retried or not). A handle is not thread-safe: `fetch` keeps one per thread and process.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, NamedTuple, Optional

import pycurl

# libcurl codes `pipelines.sources.fetch` tells apart (the rest are transient fetch errors there).
TIMED_OUT = (pycurl.E_OPERATION_TIMEDOUT, pycurl.E_ABORTED_BY_CALLBACK)  # deadline; our stall check
UNRESOLVED = pycurl.E_COULDNT_RESOLVE_HOST
TOO_MANY_REDIRECTS = pycurl.E_TOO_MANY_REDIRECTS
TOO_LARGE = (pycurl.E_FILESIZE_EXCEEDED, pycurl.E_WRITE_ERROR)  # declared too large; our write cap hit
BAD_URL = (pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL)
CUT_SHORT = (pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR, pycurl.E_BAD_CONTENT_ENCODING)
# No usable response: refused, reset, empty, or TLS that failed (handshake, certificate check).
NO_RESPONSE = (pycurl.E_COULDNT_CONNECT, pycurl.E_GOT_NOTHING, pycurl.E_SEND_ERROR, pycurl.E_SSL_CONNECT_ERROR,
               pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE)

_HTTP = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_BUFFER = 512 << 10  # bytes per write callback at most: few Python calls per image


class Response(NamedTuple):
    """The final (post-redirect) response."""

    status: int
    body: bytes
    retry_after: Optional[float]  # seconds, from a Retry-After header, if any


class CurlError(Exception):
    """libcurl failed the transfer: `code` is its CURLE_* number, `received` the body bytes
    that had arrived, `url` the last url it tried (a redirect's target, maybe)."""

    def __init__(self, code: int, message: str, received: int, url: str) -> None:
        super().__init__(f"libcurl error {code}: {message}")
        self.code = code
        self.received = received
        self.url = url


def new_handle(headers: Dict[str, str], ca_certs: str, max_redirects: int) -> pycurl.Curl:
    """A handle with what every GET shares: headers, redirects, TLS, no proxy, no signals."""
    c = pycurl.Curl()
    c.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for DNS timeouts
    c.setopt(pycurl.PROXY, "")  # `fetch` sends proxied environments to requests instead
    c.setopt(pycurl.PROTOCOLS, _HTTP)
    c.setopt(pycurl.REDIR_PROTOCOLS, _HTTP)  # a redirect never reaches file:// or others
    c.setopt(pycurl.FOLLOWLOCATION, 1)
    c.setopt(pycurl.MAXREDIRS, max_redirects)
    c.setopt(pycurl.BUFFERSIZE, _BUFFER)
    c.setopt(pycurl.NOPROGRESS, 0)  # the progress callback is the stall check (see `get`)
    c.setopt(pycurl.CAPATH if os.path.isdir(ca_certs) else pycurl.CAINFO, ca_certs)
    encoding = headers.get("Accept-Encoding")
    if encoding:
        c.setopt(pycurl.ACCEPT_ENCODING, encoding)  # and libcurl decodes the body
    c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items() if k != "Accept-Encoding"])
    return c


def get(c: pycurl.Curl, url: str, timeout_s: float, deadline_s: float, max_bytes: int) -> Response:
    """GET `url` on handle `c`: connect within `timeout_s`, no `timeout_s` without a byte, the
    whole download within `deadline_s`, at most `max_bytes` of (decoded) body.

    libcurl has no "seconds without a byte" limit (its low-speed limit averages over a window, so
    a body that stops after a fast first half ran on until the server hung up), so the progress
    callback, which libcurl calls after every read and about once a second when idle, stops a
    transfer that received nothing for `timeout_s`.
    """
    chunks: List[bytes] = []
    received = 0
    last = [time.monotonic(), -1]  # when the byte count last moved, and to what

    def progress(_dltotal: int, dlnow: int, _ultotal: int, _ulnow: int) -> int:
        now = time.monotonic()
        if dlnow != last[1]:
            last[0], last[1] = now, dlnow
        elif now - last[0] > timeout_s:
            return 1  # stops the transfer: CURLE_ABORTED_BY_CALLBACK
        return 0

    def write(chunk: bytes) -> Optional[int]:
        nonlocal received
        received += len(chunk)
        if received > max_bytes:
            return 0  # stops the transfer: CURLE_WRITE_ERROR
        chunks.append(chunk)
        return None

    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.WRITEFUNCTION, write)
    c.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout_s * 1000)))
    c.setopt(pycurl.TIMEOUT_MS, max(1, int(deadline_s * 1000)))
    c.setopt(pycurl.XFERINFOFUNCTION, progress)
    c.setopt(pycurl.MAXFILESIZE_LARGE, max_bytes)
    try:
        c.perform()
    except pycurl.error as e:
        code, message = e.args[0], e.args[1] if len(e.args) > 1 else ""
        last = c.getinfo(pycurl.EFFECTIVE_URL) or url
        raise CurlError(code, message, received, last) from None
    finally:  # drop the closures (and the chunks) from the handle
        c.setopt(pycurl.WRITEFUNCTION, _discard)
        c.setopt(pycurl.XFERINFOFUNCTION, _idle)
    retry_after = c.getinfo(pycurl.RETRY_AFTER)
    return Response(c.getinfo(pycurl.RESPONSE_CODE), b"".join(chunks), float(retry_after) if retry_after > 0 else None)


def _discard(chunk: bytes) -> None:
    """A write callback for an idle handle."""


def _idle(*_counts: int) -> int:
    """A progress callback for an idle handle."""
    return 0
