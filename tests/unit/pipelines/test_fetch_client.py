"""Both HTTP clients of `fetch` keep the same behaviour: libcurl (the default) and a requests
session (chosen when a proxy variable or a netrc file is there)."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from typing import List

import pycurl
import pytest
import requests

from pipelines.sources import fetch
from pipelines.images.errors import RowFailure

FAST = fetch.FetchConfig(timeout_s=2.0, retries=1, backoff_s=0.01)
BODY = b"\xff\xd8 image bytes " * 400
_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "NETRC", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class _Handler(http.server.BaseHTTPRequestHandler):
    """/img: BODY; /gzip: BODY gzip-encoded; /loop/N: 302 to /loop/N+1 forever. A request line
    with an absolute url (what a client sends a proxy) is answered as a proxy would, with PROXIED."""

    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        with srv.lock:
            srv.requests.append((self.client_address[1], self.path, self.headers.get("User-Agent", "")))
        headers, body, status = {}, BODY, 200
        if self.path.startswith("http://"):
            body = b"PROXIED " + self.path.encode()
        elif self.path == "/gzip":
            headers["Content-Encoding"], body = "gzip", gzip.compress(BODY)
        elif self.path.startswith("/loop/"):
            status, body = 302, b""
            headers["Location"] = f"/loop/{int(self.path.rsplit('/', 1)[1]) + 1}"
        elif self.path != "/img":
            status, body = 404, b"no"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: List[tuple] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(params=["curl", "requests"])
def client(request, monkeypatch, tmp_path):
    """A fresh per-thread client of the kind asked for; an empty netrc file selects requests."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if request.param == "requests":
        (tmp_path / ".netrc").write_text("")
    monkeypatch.setattr(fetch, "_local", threading.local())
    monkeypatch.setattr(fetch, "_unknown_hosts", set())
    kind = {"curl": pycurl.Curl, "requests": requests.Session}[request.param]
    assert isinstance(fetch._http_client(), kind)
    return request.param


def failure(url: str) -> RowFailure:
    with pytest.raises(RowFailure) as e:
        fetch.fetch(url, "", FAST)
    return e.value


def test_keep_alive_one_connection_and_our_user_agent(server, client):
    before = len(server.requests)
    for _ in range(5):
        assert fetch.fetch(server.url("/img"), "", FAST) == BODY
    mine = server.requests[before:]
    assert len(mine) == 5 and len({port for port, _, _ in mine}) == 1
    assert {ua for _, _, ua in mine} == {fetch._HEADERS["User-Agent"]}


def test_gzip_body_is_decoded(server, client):
    assert fetch.fetch(server.url("/gzip"), "", FAST) == BODY


def test_endless_redirects_fail_permanently(server, client):
    before = len(server.requests)
    assert failure(server.url("/loop/0")).reason == "fetch_error"
    assert fetch._MAX_REDIRECTS <= len(server.requests) - before <= fetch._MAX_REDIRECTS + 2  # one try, bounded


def test_invalid_url_is_a_fetch_error(client):
    assert failure("http:///no-host.jpg").reason == "fetch_error"


def test_unknown_host_is_remembered(client, monkeypatch):
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):
        if host == "dead.example":
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert failure("http://dead.example/a.jpg").reason == "connection_error"
    assert asked == ["dead.example"]  # NXDOMAIN is permanent: not retried
    e = failure("http://dead.example/b.jpg")
    assert e.reason == "connection_error" and "earlier" in e.detail and asked == ["dead.example"]


def test_a_proxy_variable_routes_through_requests_and_the_proxy(server, monkeypatch):
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    monkeypatch.setattr(fetch, "_local", threading.local())
    assert isinstance(fetch._http_client(), requests.Session)
    assert fetch.fetch("http://images.example/a.jpg", "", FAST) == b"PROXIED http://images.example/a.jpg"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # read per request, as requests does
    assert fetch.fetch(server.url("/img"), "", FAST) == BODY


def _self_signed(tmp_path) -> tuple:
    """(cert path, key path) of a fresh certificate for 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_https_checks_the_certificate_against_the_chosen_bundle(client, monkeypatch, tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    srv = _Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}/img"
    try:
        assert failure(url).reason == "connection_error"  # certifi's bundle does not trust it
        monkeypatch.setenv("CURL_CA_BUNDLE", cert)
        monkeypatch.setattr(fetch, "_local", threading.local())
        assert isinstance(fetch._http_client(), {"curl": pycurl.Curl, "requests": requests.Session}[client])
        assert fetch.fetch(url, "", FAST) == BODY
    finally:
        srv.shutdown()
        srv.server_close()


def test_without_pycurl_fetch_falls_back_to_requests(server, monkeypatch, tmp_path):
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(fetch, "curl_client", None)  # as in a process where TensorFlow came first
    monkeypatch.setattr(fetch, "_local", threading.local())
    assert isinstance(fetch._http_client(), requests.Session)
    assert fetch.fetch(server.url("/img"), "", FAST) == BODY
