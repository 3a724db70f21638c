"""requests re-reads the environment on every request only when something there matters."""

from __future__ import annotations

import pytest

from pipelines.sources import fetch

_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
         "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in _VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def test_nothing_set_means_no_per_request_lookup(clean_env):
    assert not fetch._environment_matters()


@pytest.mark.parametrize("var", ["https_proxy", "HTTP_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_proxy_or_ca_bundle_keeps_it(clean_env, var):
    clean_env.setenv(var, "http://proxy.invalid:3128" if "PROXY" in var.upper() else "/etc/ssl/bundle.pem")
    assert fetch._environment_matters()


def test_a_netrc_file_keeps_it(clean_env, tmp_path):
    (tmp_path / ".netrc").write_text("machine example.com login a password b\n")
    assert fetch._environment_matters()
    clean_env.setenv("NETRC", str(tmp_path / "absent"))
    assert not fetch._environment_matters()
