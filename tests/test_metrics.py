"""/metrics is for the operators' monitoring: a scraper with TESSERA_METRICS_TOKEN, or a caller on
an address of TESSERA_METRICS_ALLOW (loopback by default). Anyone else — the anonymous on the
internet, or anyone behind a proxy the hub was not told to trust — gets the 404 of an unknown path."""

from __future__ import annotations

import pytest

from app.config import load_config

REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
TOKEN = "metrics-token-0123456789abcdefghijklmnop"


@pytest.fixture
def token(app, monkeypatch):
    monkeypatch.setitem(app.config, "TESSERA_METRICS_TOKEN", TOKEN)
    return TOKEN


def _unknown_path(http):
    return http.get("/no-such-page", environ_base=REMOTE)


def test_anonymous_remote_caller_gets_not_found(http):
    refused = http.get("/metrics", environ_base=REMOTE)
    assert refused.status_code == 404
    assert "tessera_merges" not in refused.get_data(as_text=True)
    assert refused.get_data() == _unknown_path(http).get_data()  # nothing tells it the route exists


def test_remote_scraper_with_the_token_reads_the_metrics(http, token):
    response = http.get("/metrics", environ_base=REMOTE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and "tessera_merges" in response.get_data(as_text=True)


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN])
def test_remote_caller_with_a_wrong_token_gets_not_found(http, token, authorization):
    assert http.get("/metrics", environ_base=REMOTE, headers={"Authorization": authorization}).status_code == 404


def test_without_a_configured_token_no_bearer_is_accepted(http):
    assert http.get("/metrics", environ_base=REMOTE, headers={"Authorization": "Bearer "}).status_code == 404
    assert http.get("/metrics", environ_base=REMOTE, headers={"Authorization": "Bearer None"}).status_code == 404


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_callers_read_the_metrics(http, address):
    assert http.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_a_request_forwarded_by_an_untrusted_proxy_is_not_local(http):
    """A reverse proxy on the same host makes every caller look like 127.0.0.1 unless
    TESSERA_TRUSTED_PROXIES says what to believe of X-Forwarded-For."""
    for header in ({"X-Forwarded-For": "203.0.113.5"}, {"Forwarded": "for=203.0.113.5"}):
        assert http.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers=header).status_code == 404


def test_allowed_networks_are_configurable(app, http, monkeypatch):
    monkeypatch.setitem(app.config, "TESSERA_METRICS_ALLOW", ["10.0.0.0/8"])
    assert http.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert http.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    assert http.get("/metrics", environ_base=REMOTE).status_code == 404


def test_metrics_allow_setting_is_checked_at_start_up(monkeypatch):
    monkeypatch.setenv("TESSERA_METRICS_ALLOW", "10.0.0.0/8, 192.168.1.7")
    assert load_config()["TESSERA_METRICS_ALLOW"] == ["10.0.0.0/8", "192.168.1.7/32"]
    monkeypatch.setenv("TESSERA_METRICS_ALLOW", "10.0.0.0/8,not-a-network")
    with pytest.raises(ValueError):
        load_config()
