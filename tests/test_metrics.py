"""/metrics is for the operators' monitoring: a scraper with TESSERA_METRICS_TOKEN, or a caller on
an address of TESSERA_METRICS_ALLOW (loopback by default). Anyone else — the anonymous on the
internet, or anyone behind a proxy the hub was not told to trust — gets the 404 of an unknown path.

What it says: requests by endpoint (never the raw path), logins and failures by method, code sends
by sender kind, the outbox backlog per client, and the database's gauges; several workers add up in
prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.config import load_config
from app.events.outbox import enqueue
from app.extensions import db
from app.oidc.models import Client
from tests.conftest import ISSUER, make_test_app
from tests.rp import Browser

ROOT = Path(__file__).resolve().parent.parent

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


# --- what the metrics say ------------------------------------------------------------------------------

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


def _samples(http) -> dict[tuple, float]:
    """(sample name, sorted labels) → value, from a scrape."""
    response = http.get("/metrics", environ_base=LOCAL)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for sample in family.samples}


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_database_gauges_are_still_there(http):
    samples = _samples(http)
    for status in ("pending", "running", "completed", "failed"):
        assert _value(samples, "tessera_merges", status=status) == 0
    assert _value(samples, "tessera_metrics_database_ok") == 1


def test_logins_and_failed_logins_are_counted_by_method(app, http, factories):
    account = factories.account()
    before = _samples(http)
    browser = Browser(app.test_client(), ISSUER)
    page = browser.go("/account/login")
    assert browser.login(page, account.phone, "wrong password").status_code == 401
    assert browser.login(page, account.phone, account.password).status_code == 200
    after = _samples(http)
    for result in ("success", "failure"):
        assert _value(after, "tessera_logins_total", method="pwd", result=result) == \
            _value(before, "tessera_logins_total", method="pwd", result=result) + 1
    for status in ("401", "302"):
        labels = {"method": "POST", "endpoint": "account.login", "status": status}
        assert _value(after, "tessera_http_requests_total", **labels) == _value(before, "tessera_http_requests_total", **labels) + 1
    labels = {"method": "POST", "endpoint": "account.login", "status_class": "4xx"}
    assert _value(after, "tessera_http_request_duration_seconds_count", **labels) == \
        _value(before, "tessera_http_request_duration_seconds_count", **labels) + 1


def test_routes_are_labelled_by_endpoint_never_by_path(http):
    http.get("/no-such-page/12345")
    http.get("/api/users/some-sub-value")
    http.open("/", method="BREW")
    samples = _samples(http)
    endpoints = {dict(labels).get("endpoint") for name, labels in samples if name == "tessera_http_requests_total"}
    assert "none" in endpoints and "partners.read_user" in endpoints
    assert not any(e.startswith("/") or "12345" in e for e in endpoints)
    methods = {dict(labels)["method"] for name, labels in samples if name == "tessera_http_requests_total"}
    assert "BREW" not in methods and "other" in methods


def test_code_sends_are_counted_by_sender_kind(app, factories, monkeypatch, tmp_path):
    account = factories.account()
    browser = Browser(app.test_client(), ISSUER)
    browser.http.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    assert browser.login(browser.go("/account/login"), account.phone, account.password).status_code == 200
    before = _samples(browser.http)
    monkeypatch.setitem(app.config, "TESSERA_SMS_SENDER", "file")
    monkeypatch.setitem(app.config, "TESSERA_SMS_FILE", str(tmp_path / "sms.jsonl"))
    page = browser.go("/account/phone/bind")
    assert browser.submit(page, {"phone": "+14155559876", "submit": "Send code"}).status_code == 200
    monkeypatch.setitem(app.config, "TESSERA_SMS_SENDER", "webhook")
    monkeypatch.setitem(app.config, "TESSERA_SMS_WEBHOOK_URL", None)
    page = browser.go("/account/phone/bind")
    browser.submit(page, {"phone": "+14155559877", "submit": "Send code"})  # the sender fails: a flashed error
    after = _samples(browser.http)
    assert _value(after, "tessera_otp_sends_total", sender="file", result="sent") == \
        _value(before, "tessera_otp_sends_total", sender="file", result="sent") + 1
    assert _value(after, "tessera_otp_sends_total", sender="webhook", result="failed") == \
        _value(before, "tessera_otp_sends_total", sender="webhook", result="failed") + 1


def test_outbox_backlog_and_failing_deliveries_per_client(app, http, factories):
    client = factories.client()
    with app.app_context():
        pk = db.session.scalar(db.select(Client.id).filter_by(client_id=client.client_id))
        for n, error in enumerate([None, "HTTP 500: down", "connection refused"]):
            event = enqueue(kind="logout", client_id=pk, url="https://rp.example.com/logout", body="x",
                            content_type="application/jwt", jti=f"metrics-{n}")
            event.last_error = error
        delivered = enqueue(kind="logout", client_id=pk, url="https://rp.example.com/logout", body="x",
                            content_type="application/jwt", jti="metrics-done")
        delivered.status = "delivered"
        db.session.commit()
    samples = _samples(http)
    assert _value(samples, "tessera_outbox_backlog", client=client.client_id) == 3
    assert _value(samples, "tessera_outbox_failing", client=client.client_id) == 2
    assert _value(samples, "tessera_outbox_events", kind="logout", status="pending") == 3


def test_a_database_that_cannot_be_read_still_gives_the_process_metrics(tmp_path):
    empty = make_test_app(f"sqlite:///{tmp_path}/empty.db")
    samples = _samples(empty.test_client())
    assert _value(samples, "tessera_metrics_database_ok") == 0
    assert not any(name == "tessera_merges" for name, _ in samples)


def test_a_missing_multiprocess_directory_stops_the_start_up(database_url, monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        make_test_app(database_url)


WORKER = """
import sys
from tests.conftest import make_test_app
app = make_test_app(sys.argv[1])
http = app.test_client()
for _ in range(int(sys.argv[2])):
    assert http.get("/healthz").status_code == 200
if sys.argv[3] == "scrape":
    print(http.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True))
"""


def test_several_workers_add_up_in_multiprocess_mode(database_url, tmp_path):
    """Two processes (as two gunicorn workers) write to PROMETHEUS_MULTIPROC_DIR; a scrape of either
    counts both."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", WORKER, database_url, "3", "quiet"], env=env, cwd=ROOT, check=True)
    scrape = subprocess.run([sys.executable, "-c", WORKER, database_url, "2", "scrape"], env=env, cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scrape) for s in family.samples}
    assert _value(samples, "tessera_http_requests_total", method="GET", endpoint="web.healthz", status="200") == 5
    assert _value(samples, "tessera_metrics_database_ok") == 1
