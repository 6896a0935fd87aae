"""`tessera upstreams update|disable|enable` through the app's own command line, and what the login
pages then do, through HTTP against the WeChat-style open platform of ``conftest.py``: a disabled
upstream has no button, its start and its callback refuse and its pending logins are gone; an update
is checked as a creation is, stores the secret encrypted, and never changes what linked identities
mean."""

from __future__ import annotations

import html
import json

import pytest

from app.accounts.models import AuditEvent
from app.crypto import decrypt_json
from app.extensions import db
from app.federation.models import PendingUpstreamLogin, UpstreamProvider
from app.federation.providers import create_provider
from tests.conftest import ISSUER
from tests.federation.test_upstream import (  # noqa: F401 (rp: a fixture)
    START_RE, create_account_on, pending_uid, platform_provider, rp, start_at_hub, sub_at_rp, through_platform,
    upstream_identities,
)
from tests.rp import Browser
from tests.cli import cli as _cli, cli_json as _json, cli_refused as _refused  # noqa: F401




def _buttons(browser: Browser, rp) -> dict[str, str]:
    """The upstream buttons of the hub's login page for a fresh authorization request."""
    page = browser.go(rp.authorization_request(scope="openid").url)
    assert page.status_code == 200
    return {m.group(2): html.unescape(m.group(1)) for m in START_RE.finditer(page.get_data(as_text=True))}


def _provider(app, slug: str) -> UpstreamProvider:
    with app.app_context():
        row = db.session.scalar(db.select(UpstreamProvider).filter_by(slug=slug))
        db.session.expunge_all()
        return row


def _audit(app, prefix: str) -> list[tuple[str, str, dict]]:
    with app.app_context():
        return [(e.kind, e.actor, e.details) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.kind.like(prefix + "%")).order_by(AuditEvent.id))]


# --- disable / enable ----------------------------------------------------------------------------

def test_a_disabled_upstream_is_not_offered_and_refuses_its_start_and_callback(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    platform_provider(app, open_platform, "wx-mobile", "wx-mobile-app")
    browser = Browser(http, ISSUER)
    # A login under way at the upstream when the operator disables it.
    _, upstream_url = start_at_hub(browser, rp, "wx-web")
    callback = through_platform(upstream_url)

    disabled = _json(app, "upstreams", "disable", "wx-web")
    assert (disabled["enabled"], disabled["pending_logins_dropped"]) == (False, 0)
    buttons = _buttons(browser, rp)
    assert "wx-web" not in buttons and "wx-mobile" in buttons
    interaction = buttons["wx-mobile"].split("interaction=", 1)[1]
    start = browser.go(f"/upstream/wx-web/start?interaction={interaction}")
    assert start.status_code == 404 and "logging in with WeChat wx-web is turned off" in start.get_data(as_text=True)

    page = browser.go(callback)
    assert page.status_code == 404 and "is turned off" in page.get_data(as_text=True)
    assert open_platform.token_requests == []  # the code was never redeemed
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(PendingUpstreamLogin.id))) == 0
    assert upstream_identities(app) == []

    assert _json(app, "upstreams", "enable", "wx-web")["enabled"] is True
    request, upstream_url = start_at_hub(browser, rp, "wx-web")
    assert sub_at_rp(rp, request, create_account_on(browser, browser.go(through_platform(upstream_url))))["sub"]
    assert [(k, a, d) for k, a, d in _audit(app, "upstream.")] == [
        ("upstream.disabled", "operator:cli", {"upstream": "wx-web", "pending_logins_dropped": 0}),
        ("upstream.enabled", "operator:cli", {"upstream": "wx-web"}),
    ]


def test_disabling_drops_the_logins_it_left_pending(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "wx-web")
    page = browser.go(through_platform(upstream_url))
    uid = pending_uid(page)

    assert "wx-web: disabled (1 pending logins dropped)" in _cli(app, "upstreams", "disable", "wx-web").output
    assert browser.go(f"/upstream/pending/{uid}").status_code == 400  # gone: the expired page
    created = browser.submit(page, {"submit": "Create a new account"}, url=f"/upstream/pending/{uid}/create")
    assert created.status_code == 400
    assert upstream_identities(app) == []
    assert "(disabled)" in _cli(app, "upstreams", "list").output


def test_unknown_upstreams_are_refused(app):
    for command in ("disable", "enable"):
        assert "no upstream 'nope'" in _refused(app, "upstreams", command, "nope")
    assert "no upstream 'nope'" in _refused(app, "upstreams", "update", "nope", "--name", "X")


# --- update --------------------------------------------------------------------------------------

def test_update_changes_the_given_fields_and_stores_the_secret_encrypted(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    open_platform.clients["wx-web-app"] = "rotated-at-the-platform"  # the platform rotated our secret
    updated = _json(app, "upstreams", "update", "wx-web", "--name", "WeChat", "--client-secret",
                    "rotated-at-the-platform", "--matching", "verified_phone", "--platform", "")
    assert (updated["name"], updated["matching_mode"], updated["platform"]) == ("WeChat", "verified_phone", None)
    assert updated["has_client_secret"] is True and "client_secret" not in updated
    stored = _provider(app, "wx-web").client_secret_encrypted
    assert "rotated-at-the-platform" not in stored
    with app.app_context():
        assert decrypt_json(stored) == "rotated-at-the-platform"
    assert updated["scope"] == "snsapi_login" and updated["token_endpoint"] == open_platform.url + "/token"

    browser = Browser(http, ISSUER)
    assert "WeChat" in browser.go(rp.authorization_request(scope="openid").url).get_data(as_text=True)
    request, upstream_url = start_at_hub(browser, rp, "wx-web")
    assert sub_at_rp(rp, request, create_account_on(browser, browser.go(through_platform(upstream_url))))["sub"]

    (event,) = _audit(app, "upstream.updated")
    assert event == ("upstream.updated", "operator:cli", {
        "upstream": "wx-web", "changed": ["client_secret", "matching_mode", "name", "platform"]})
    assert "rotated-at-the-platform" not in json.dumps(event)

    assert _json(app, "upstreams", "update", "wx-web", "--no-client-secret")["has_client_secret"] is False


def test_the_subject_claim_of_a_linked_oauth2_upstream_stays(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    remapped = ("upstreams", "update", "wx-web", "--claim-map", "unionid=sub")
    # No identity linked yet: the mapping may still change.
    assert _json(app, *remapped)["claim_mapping"] == {"unionid": "sub"}
    _json(app, "upstreams", "update", "wx-web", "--claim-map", "openid=sub", "--claim-map", "unionid=unionid")
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "wx-web")
    sub_at_rp(rp, request, create_account_on(browser, browser.go(through_platform(upstream_url))))
    assert "1 identities are linked to upstream 'wx-web' by its openid claim" in _refused(app, *remapped)
    # Other claims may change.
    assert _json(app, "upstreams", "update", "wx-web", "--claim-map", "openid=sub", "--claim-map",
                 "nickname=name")["claim_mapping"] == {"openid": "sub", "nickname": "name"}


BAD_UPDATES = [
    (("--name", " "), "a provider needs a name"),
    (("--client-id", ""), "a provider needs the client_id"),
    (("--platform", "Not A Slug"), "platform must be"),
    (("--token-endpoint", "ftp://platform.example.com/token"), "must be an https URL"),
    (("--claim-map", "nickname=name"), "needs a claim mapping to sub"),
    (("--claim-map", "openid"), "a claim mapping is upstream=ours"),
    (("--claim-map", "openid=password"), "cannot map to 'password'"),
    (("--discovery-url", "https://accounts.example.com"), "plain OAuth 2.0 provider: its kind cannot change"),
    ((), "nothing to change"),
]


@pytest.mark.parametrize("args, expected", BAD_UPDATES)
def test_bad_updates_are_refused_and_change_nothing(app, open_platform, args, expected):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    before = _json(app, "upstreams", "list")
    assert expected in _refused(app, "upstreams", "update", "wx-web", *args)
    assert _json(app, "upstreams", "list") == before
    assert _audit(app, "upstream.") == []


def test_usage_errors(app, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    assert _cli(app, "upstreams", "update", "wx-web", "--client-secret", "x", "--no-client-secret").exit_code == 2
    assert _cli(app, "upstreams", "update", "wx-web", "--matching", "always").exit_code == 2


def test_an_openid_connect_upstream_keeps_its_issuer(app, open_platform):
    open_platform.issuer_in_discovery = open_platform.url
    with app.app_context():
        create_provider(slug="op", name="OP", discovery_url=open_platform.url, client_id="hub", client_secret="s")
        row = db.session.scalar(db.select(UpstreamProvider).filter_by(slug="op"))
        row.token_endpoint = "https://stale.example.com/token"
        db.session.commit()
    # Read again from the same issuer: the endpoints are refreshed.
    assert _json(app, "upstreams", "update", "op", "--discovery-url", open_platform.url)["token_endpoint"] == \
        open_platform.url + "/token"
    assert "endpoints come from its discovery document" in _refused(
        app, "upstreams", "update", "op", "--token-endpoint", "https://other.example.com/token")
    assert "needs the openid scope" in _refused(app, "upstreams", "update", "op", "--scope", "profile")
    with app.app_context():  # configured from another issuer before
        db.session.scalar(db.select(UpstreamProvider).filter_by(slug="op")).issuer = "https://old.example.com"
        db.session.commit()
    message = _refused(app, "upstreams", "update", "op", "--discovery-url", open_platform.url)
    assert f"names the issuer '{open_platform.url}', not this upstream's 'https://old.example.com'" in message
