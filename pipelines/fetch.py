"""Fetch the bytes behind a CSV `url`: http(s), gs://, file:// or a path relative to the CSV.

Transient failures (timeouts, connection errors, 429, 5xx, a body cut short) are retried a
bounded number of times with exponential backoff and jitter; permanent ones (other 4xx, missing
files) fail at once. Every failure is a `RowFailure` with a reason from `pipelines.errors`, so a
caller never has to catch anything else. TF-free: the indexer and demo may import `fetch`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from typing import List, Optional

import requests
import urllib3

from pipelines import bounded_read, storage, tar_source
from pipelines.errors import RowFailure

_SCHEMES_REMOTE = ("http://", "https://", "gs://", "file://")


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """How hard to try. `timeout_s` bounds connect, each read, and (x4) a whole download."""

    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_bytes: int = 64 << 20


def resolve(url: str, base_dir: str = "") -> str:
    """Where to read `url` from: absolute urls as they are, other paths relative to `base_dir`."""
    url = url.strip()
    if url.startswith(_SCHEMES_REMOTE) or not base_dir or os.path.isabs(url):
        return url
    return storage.join(base_dir, url)


_session = threading.local()
# Hosts DNS said do not exist: later rows fail at once (dead hosts repeat across GLD's rows).
_unknown_hosts: set = set()


def _environment_matters() -> bool:
    """True when requests' per-request look at the environment could change a request: a proxy
    or CA-bundle variable is set, or a netrc file exists."""
    if urllib.request.getproxies() or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return True
    netrc = os.environ.get("NETRC")
    return any(os.path.exists(os.path.expanduser(p)) for p in ([netrc] if netrc else ["~/.netrc", "~/_netrc"]))


def _http_session() -> requests.Session:
    """One connection-pooling session per thread (requests sessions are not thread-safe).

    When the environment holds nothing requests would use, the session stops re-reading it on
    every request (`trust_env`): that scan cost ~0.2 ms of CPU per image (docs/preprocess.md).
    """
    s = getattr(_session, "s", None)
    if s is None:
        s = _session.s = requests.Session()
        s.headers["User-Agent"] = "landmark-recognition-preprocess/0.1"
        s.trust_env = _environment_matters()
    return s


class _Transient(Exception):
    """A failure worth another try; `reason` is what it becomes when the tries run out."""

    def __init__(self, reason: str, detail: str, retry_after: Optional[float] = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def _status_failure(status: int) -> RowFailure:
    reason = {403: "http_403", 404: "http_404", 410: "http_410"}.get(status, "http_4xx")
    return RowFailure(reason, f"HTTP {status}")


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _in_chain(error: BaseException, match) -> bool:
    """True when `match` holds for the error or any of its causes (urllib3 nests them deeply)."""
    seen, stack = set(), [error]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if match(e):
            return True
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return False


def _unknown_host(e: BaseException) -> bool:
    """DNS answered "name or service not known"."""
    return isinstance(e, socket.gaierror) and e.errno == socket.EAI_NONAME


def _timed_out(e: BaseException) -> bool:
    """A read timeout in the middle of a body (requests reports it as a ConnectionError)."""
    if isinstance(e, urllib3.exceptions.NewConnectionError):  # subclasses ConnectTimeoutError
        return False
    return isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError))


def _read_body(r: requests.Response, cfg: FetchConfig, deadline: float) -> bytes:
    """The body, at most `cfg.max_bytes`, by `deadline` (a wall clock, not per read: a server
    trickling a few bytes per second must not hold a worker). Each read returns what one socket
    read got (`read1`), and the socket's timeout is cut to the time left, so the deadline holds
    to within a scheduler tick whatever the server's pace."""
    chunks, total = [], 0
    sock = getattr(getattr(r.raw, "connection", None), "sock", None)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Transient("timeout", f"download slower than {4 * cfg.timeout_s:.0f} s")
        if sock is not None:
            sock.settimeout(min(cfg.timeout_s, left))
        try:
            chunk = r.raw.read1(256 << 10, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as e:
            raise _Transient("timeout", f"{type(e).__name__}: {e}") from e
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cfg.max_bytes:
            raise RowFailure("too_large", f"body over {cfg.max_bytes} bytes")
        chunks.append(chunk)


def _http_once(url: str, cfg: FetchConfig) -> bytes:
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError as e:
        raise RowFailure("fetch_error", f"invalid url: {e}") from e
    if host in _unknown_hosts:
        raise RowFailure("connection_error", f"unknown host {host} (DNS said so earlier in this process)")
    deadline = time.monotonic() + 4 * cfg.timeout_s
    try:
        with _http_session().get(url, timeout=cfg.timeout_s, stream=True) as r:
            if r.status_code == 429 or r.status_code >= 500:
                reason = "http_429" if r.status_code == 429 else "http_5xx"
                raise _Transient(reason, f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
            if r.status_code >= 400:
                raise _status_failure(r.status_code)
            declared = r.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                raise RowFailure("too_large", f"Content-Length {declared} > {cfg.max_bytes}")
            return _read_body(r, cfg, deadline)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as e:
        raise _Transient("truncated", f"body cut short: {e}") from e
    except requests.exceptions.Timeout as e:
        raise _Transient("timeout", str(e)) from e
    except requests.exceptions.ConnectionError as e:
        if _in_chain(e, _timed_out):
            raise _Transient("timeout", str(e)) from e
        if _in_chain(e, _unknown_host):  # NXDOMAIN is permanent (dead GLD hosts); EAI_AGAIN and the rest retry
            dead: List[str] = []
            _in_chain(e, lambda x: isinstance(x, urllib3.exceptions.NameResolutionError) and dead.append(x.conn.host))
            _unknown_hosts.update(h for h in dead if h)  # the host that failed (maybe a redirect's)
            raise RowFailure("connection_error", str(e)) from e
        raise _Transient("connection_error", str(e)) from e
    except requests.exceptions.RequestException as e:  # invalid url, too many redirects, ...
        raise RowFailure("fetch_error", f"{type(e).__name__}: {e}") from e


def _read_file(path: str, cfg: FetchConfig) -> bytes:
    if not storage.is_gcs(path):  # local: regular files only, size and time capped
        return bounded_read.read_local(path, cfg.max_bytes, 4 * cfg.timeout_s)
    try:
        data = storage.read_bytes(path, limit=cfg.max_bytes, timeout_s=cfg.timeout_s, deadline_s=4 * cfg.timeout_s)
    except FileNotFoundError as e:
        raise RowFailure("not_found", path) from e
    except storage.ReadBoundExceeded as e:
        if e.bound == "size":
            raise RowFailure("too_large", f"object {e}") from e
        raise _Transient("timeout", f"download slower than {4 * cfg.timeout_s:.0f} s") from e
    except ValueError as e:  # e.g. a gs:// url without a bucket
        raise RowFailure("fetch_error", f"{type(e).__name__}: {e}") from e
    except Exception as e:
        permanent = type(e).__module__.startswith("google.auth") or (  # no credentials, no permission
            type(e).__module__.startswith("google.api_core") and type(e).__name__ in ("Forbidden", "Unauthorized", "BadRequest")
        )
        if permanent:
            raise RowFailure("fetch_error", f"{type(e).__name__}: {e}") from e
        # gs:// transport errors and the like: retried by the caller
        raise _Transient("fetch_error", f"{type(e).__name__}: {e}") from e
    if len(data) > cfg.max_bytes:
        raise RowFailure("too_large", f"object over {cfg.max_bytes} bytes")
    return data


def _fetch_once(location: str, cfg: FetchConfig) -> bytes:
    if location.startswith(("http://", "https://")):
        return _http_once(location, cfg)
    if location.startswith(tar_source.SCHEME):  # a member of a GLDv2 tar: its byte range only
        try:
            return tar_source.read_member(location, cfg.max_bytes)
        except tar_source.TransientRead as e:
            raise _Transient("fetch_error", str(e)) from e
    if location.startswith("file://"):
        return _read_file(urllib.parse.unquote(urllib.parse.urlparse(location).path), cfg)
    if not location:
        raise RowFailure("fetch_error", "empty url")
    if "://" in location and not storage.is_gcs(location):
        raise RowFailure("fetch_error", f"unsupported scheme: {location[:80]}")
    return _read_file(location, cfg)


def fetch(url: str, base_dir: str = "", cfg: FetchConfig = FetchConfig()) -> bytes:
    """The bytes at `url` (resolved against `base_dir`), or raises `RowFailure`."""
    location = resolve(url, base_dir)
    attempt = 0
    while True:
        try:
            return _fetch_once(location, cfg)
        except _Transient as t:
            if attempt >= cfg.retries:
                raise RowFailure(t.reason, f"{t.detail} (after {attempt + 1} tries)") from t
            delay = min(cfg.max_backoff_s, cfg.backoff_s * (2**attempt)) * random.uniform(0.5, 1.0)
            if t.retry_after is not None:
                delay = max(delay, min(t.retry_after, cfg.max_backoff_s))
            time.sleep(delay)
            attempt += 1
