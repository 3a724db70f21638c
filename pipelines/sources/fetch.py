"""Fetch the bytes behind a CSV `url`: http(s), gs://, file:// or a path relative to the CSV.

Transient failures (timeouts, connection errors, 429, 5xx, a body cut short) are retried a
bounded number of times with exponential backoff and jitter; permanent ones (other 4xx, missing
files) fail at once. Every failure is a `RowFailure` with a reason from `pipelines.images.errors`, so a
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
from typing import List, Optional, Union

import certifi
import requests
import urllib3

from pipelines.sources import bounded_read, storage, tar_source
from pipelines.images.errors import RowFailure

try:
    from pipelines.sources import curl_client
except ImportError:  # pycurl refuses to load beside an older libcurl already in the process:
    # TensorFlow brings one, so a process that imported TensorFlow first (the indexer, the demo)
    # fetches through requests instead; preprocessing workers never import TensorFlow.
    curl_client = None  # type: ignore[assignment]

_SCHEMES_REMOTE = ("http://", "https://", "gs://", "file://")


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """How hard to try. `timeout_s` bounds connect, each read, and (x4) a whole download."""

    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_bytes: int = 64 << 20

    @property
    def deadline_s(self) -> float:
        """The bound on a whole download (or local read), whatever its pace."""
        return 4 * self.timeout_s


def resolve(url: str, base_dir: str = "") -> str:
    """Where to read `url` from: absolute urls as they are, other paths relative to `base_dir`."""
    url = url.strip()
    if url.startswith(_SCHEMES_REMOTE) or not base_dir or os.path.isabs(url):
        return url
    return storage.join(base_dir, url)


_local = threading.local()
# Hosts DNS said do not exist: later rows fail at once (dead hosts repeat across GLD's rows).
_unknown_hosts: set = set()
# What requests sends by default, with our User-Agent (some image hosts refuse requests' own).
_HEADERS = {"User-Agent": "landmark-recognition-preprocess/0.1", "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}
# requests' own redirect limit (`Session.max_redirects`); past it a row fails as fetch_error.
_MAX_REDIRECTS = 30


def _netrc_exists() -> bool:
    netrc = os.environ.get("NETRC")
    return any(os.path.exists(os.path.expanduser(p)) for p in ([netrc] if netrc else ["~/.netrc", "~/_netrc"]))


def _environment_matters() -> bool:
    """True when requests' per-request look at the environment could change a request: a proxy
    or CA-bundle variable is set, or a netrc file exists."""
    if urllib.request.getproxies() or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return True
    return _netrc_exists()


def _http_client() -> Union["curl_client.pycurl.Curl", requests.Session]:
    """This thread's keep-alive client, made on first use in each thread of each process.

    libcurl (`pipelines.sources.curl_client`): it cost less than half of urllib3's CPU per image and
    holds no GIL while it waits and reads. A requests session instead where a proxy variable or a
    netrc file is there, since it honours them (and NO_PROXY, proxy auth, ...) as a user
    expects, and where pycurl could not load (see the import above). Either way the same headers
    and timeouts, and certificates checked against requests' choice: REQUESTS_CA_BUNDLE, else
    CURL_CA_BUNDLE, else certifi's bundle.
    """
    client = getattr(_local, "client", None)
    if client is None or _local.pid != os.getpid():  # a forked child must not share its parent's sockets
        ca_certs, use_requests = certifi.where(), False
        if _environment_matters():  # rare outside CI and corporate machines: look closer
            ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ca_certs
            use_requests = bool(urllib.request.getproxies()) or _netrc_exists()
        if use_requests or curl_client is None:
            client = requests.Session()
            client.headers.update(_HEADERS)
        else:
            client = curl_client.new_handle(_HEADERS, ca_certs, _MAX_REDIRECTS)
        _local.client, _local.pid = client, os.getpid()
    return client


class _Transient(Exception):
    """A failure worth another try; `reason` is what it becomes when the tries run out."""

    def __init__(self, reason: str, detail: str, retry_after: Optional[float] = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def _check_status(status: int, retry_after: Optional[float]) -> None:
    """Raise what a final (post-redirect) response's status means, whichever client got it: 429
    and 5xx are retried (after `retry_after` seconds, if the server said), other 4xx are not."""
    if status == 429 or status >= 500:
        raise _Transient("http_429" if status == 429 else "http_5xx", f"HTTP {status}", retry_after)
    if status >= 400:
        reason = {403: "http_403", 404: "http_404", 410: "http_410"}.get(status, "http_4xx")
        raise RowFailure(reason, f"HTTP {status}")


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


def _read_body(r: urllib3.BaseHTTPResponse, cfg: FetchConfig, deadline: float) -> bytes:
    """The body, at most `cfg.max_bytes`, by `deadline` (a wall clock, not per read: a server
    trickling a few bytes per second must not hold a worker). Each read returns what one socket
    read got (`read1`), and the socket's timeout is cut to the time left, so the deadline holds
    to within a scheduler tick whatever the server's pace."""
    chunks, total = [], 0
    sock = getattr(getattr(r, "connection", None), "sock", None)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Transient("timeout", f"download slower than {cfg.deadline_s:.0f} s")
        if sock is not None:
            sock.settimeout(min(cfg.timeout_s, left))
        try:
            chunk = r.read1(256 << 10, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as e:
            raise _Transient("timeout", f"{type(e).__name__}: {e}") from e
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as e:
            raise _Transient("truncated", f"body cut short: {e}") from e
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cfg.max_bytes:
            raise RowFailure("too_large", f"body over {cfg.max_bytes} bytes")
        chunks.append(chunk)


def _accept(r: urllib3.BaseHTTPResponse, cfg: FetchConfig, deadline: float) -> bytes:
    """The body of a final (post-redirect) response, or the failure its status or size means."""
    _check_status(r.status, _retry_after(r.headers.get("Retry-After")))
    declared = r.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
        raise RowFailure("too_large", f"Content-Length {declared} > {cfg.max_bytes}")
    return _read_body(r, cfg, deadline)


def _connection_failure(e: BaseException) -> Exception:
    """What a failure to connect or to get a response's head means (either client's errors)."""
    if _in_chain(e, _timed_out):
        return _Transient("timeout", str(e))
    if _in_chain(e, _unknown_host):  # NXDOMAIN is permanent (dead GLD hosts); EAI_AGAIN and the rest retry
        dead: List[str] = []
        _in_chain(e, lambda x: isinstance(x, urllib3.exceptions.NameResolutionError) and dead.append(x.conn.host))
        _unknown_hosts.update(h for h in dead if h)  # the host that failed (maybe a redirect's)
        return RowFailure("connection_error", str(e))
    return _Transient("connection_error", str(e))


def _get_curl(handle: "curl_client.pycurl.Curl", url: str, cfg: FetchConfig) -> bytes:
    """One GET through libcurl (redirects followed there, no retries of its own)."""
    try:
        r = curl_client.get(handle, url, cfg.timeout_s, cfg.deadline_s, cfg.max_bytes)
    except curl_client.CurlError as e:
        raise _curl_failure(e, cfg) from e
    _check_status(r.status, r.retry_after)
    return r.body


def _curl_failure(e: curl_client.CurlError, cfg: FetchConfig) -> Exception:
    """What a libcurl error code means: the same reasons as the requests path's errors above."""
    if e.code in curl_client.TIMED_OUT:
        return _Transient("timeout", f"{e} (connect {cfg.timeout_s:.0f} s, stall {cfg.timeout_s:.0f} s, "
                                     f"download {cfg.deadline_s:.0f} s)")
    if e.code in curl_client.TOO_LARGE:
        return RowFailure("too_large", f"body over {cfg.max_bytes} bytes")
    if e.code in curl_client.BAD_URL or e.code == curl_client.TOO_MANY_REDIRECTS:
        return RowFailure("fetch_error", str(e))
    if e.code == curl_client.UNRESOLVED:
        return _unresolved(e)
    if e.code in curl_client.CUT_SHORT and e.received:
        return _Transient("truncated", f"body cut short: {e}")
    if e.code in curl_client.CUT_SHORT or e.code in curl_client.NO_RESPONSE:
        return _Transient("connection_error", str(e))
    return _Transient("fetch_error", str(e))


def _unresolved(e: curl_client.CurlError) -> Exception:
    """libcurl could not resolve a host: NXDOMAIN (asked again here, to tell it from a DNS
    hiccup) is permanent and remembered, as dead GLD hosts repeat; anything else is retried."""
    host = urllib.parse.urlsplit(e.url).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as g:
        if _unknown_host(g):
            _unknown_hosts.add(host)
            return RowFailure("connection_error", f"{e} (unknown host {host})")
    except (OSError, UnicodeError):
        pass
    return _Transient("connection_error", str(e))


def _get_requests(session: requests.Session, url: str, cfg: FetchConfig, deadline: float) -> bytes:
    """One GET through requests (proxies, NO_PROXY and netrc honoured), its errors mapped alike."""
    try:
        with session.get(url, timeout=cfg.timeout_s, stream=True) as r:
            return _accept(r.raw, cfg, deadline)
    except requests.exceptions.Timeout as e:
        raise _Transient("timeout", str(e)) from e
    except requests.exceptions.ConnectionError as e:
        raise _connection_failure(e) from e
    except requests.exceptions.RequestException as e:  # invalid url, too many redirects, ...
        raise RowFailure("fetch_error", f"{type(e).__name__}: {e}") from e


def _http_once(url: str, cfg: FetchConfig) -> bytes:
    try:
        parts = urllib.parse.urlsplit(url)
        host, _ = parts.hostname or "", parts.port  # .port raises ValueError on a bad port
    except ValueError as e:
        raise RowFailure("fetch_error", f"invalid url: {e}") from e
    if not host:
        raise RowFailure("fetch_error", f"invalid url: no host in {url[:80]}")
    if host in _unknown_hosts:
        raise RowFailure("connection_error", f"unknown host {host} (DNS said so earlier in this process)")
    client = _http_client()
    if isinstance(client, requests.Session):
        return _get_requests(client, url, cfg, time.monotonic() + cfg.deadline_s)
    return _get_curl(client, url, cfg)


def _read_file(path: str, cfg: FetchConfig) -> bytes:
    if not storage.is_gcs(path):  # local: regular files only, size and time capped
        return bounded_read.read_local(path, cfg.max_bytes, cfg.deadline_s)
    try:
        data = storage.read_bytes(path, limit=cfg.max_bytes, timeout_s=cfg.timeout_s, deadline_s=cfg.deadline_s)
    except FileNotFoundError as e:
        raise RowFailure("not_found", path) from e
    except storage.ReadBoundExceeded as e:
        if e.bound == "size":
            raise RowFailure("too_large", f"object {e}") from e
        raise _Transient("timeout", f"download slower than {cfg.deadline_s:.0f} s") from e
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
