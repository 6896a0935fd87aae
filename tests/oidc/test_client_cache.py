"""What the hub caches across requests is a plain snapshot: a request that fails and rolls back
(an attacker's wrong client secret, a bad redirect_uri) cannot poison the cached client for
everybody else."""

from __future__ import annotations

import base64
import time

import pytest

from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def _sign_in(factories, http, browser) -> None:
    """A person logs in at the hub through a trusted client of another tenant."""
    elsewhere = factories.client(redirect_uri="https://home.example.com/cb", tenant=factories.tenant(), trusted=True)
    _, response = authorize(browser, RelyingParty.for_client(http, ISSUER, elsewhere), factories.account())
    code_from(response)


def _wrong_secret_at_token(http, client):
    basic = base64.b64encode(f"{client.client_id}:not-the-secret".encode()).decode()
    response = http.post("/token", data={"grant_type": "authorization_code", "code": "x",
                                         "redirect_uri": client.redirect_uri},
                         headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def _bad_redirect_uri_at_authorize(http, client):
    response = http.get("/authorize", query_string={
        "client_id": client.client_id, "response_type": "code", "scope": "openid",
        "redirect_uri": "https://attacker.example.net/cb"})
    assert response.status_code == 400  # never redirected to an unregistered URI


@pytest.mark.parametrize("failed_request", [_wrong_secret_at_token, _bad_redirect_uri_at_authorize],
                         ids=["wrong-secret-at-token", "bad-redirect-uri-at-authorize"])
def test_a_failed_anonymous_request_does_not_break_the_client_for_others(factories, http, browser, app, failed_request):
    _sign_in(factories, http, browser)
    # An untrusted client nobody used yet: the attacker's request is the first to load it.
    target = factories.client(redirect_uri="https://shop.example.org/cb", tenant=factories.tenant())
    failed_request(app.test_client(), target)

    rp = RelyingParty.for_client(http, ISSUER, target)
    page = browser.go(rp.authorization_request().url)
    assert page.status_code == 200, page.status_code
    assert "Allow access" in page.get_data(as_text=True)  # the consent page, not a 500
    response = browser.approve(page)
    assert response.status_code == 302 and response.location.startswith(target.redirect_uri)


# --- disabling a client -------------------------------------------------------------------------

def _tokens(factories, http, browser, client):
    account = factories.account()
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, account, scope="openid profile")
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 200, result.get_json()
    return rp, result.get_json()


def test_a_disabled_client_is_refused_everywhere_and_its_tokens_stop_working(app, factories, http, browser):
    client = factories.client(redirect_uri="https://shop.example.org/cb", trusted=True)
    rp, tokens = _tokens(factories, http, browser, client)
    introspector = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="introspection")
    introspect_auth = RelyingParty.for_client(http, ISSUER, introspector)._auth({})[1]
    with app.app_context():
        from app.oidc.clients import set_client_disabled

        set_client_disabled(client.client_id, True, actor="operator:test")

    page = browser.go(rp.authorization_request().url)
    assert page.status_code == 400 and "invalid_client" in page.get_data(as_text=True)
    refreshed = rp.refresh(tokens["refresh_token"])
    assert refreshed.status_code in (400, 401) and refreshed.get_json()["error"] == "invalid_client"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert http.post("/introspect", data={"token": tokens["access_token"]},
                     headers=introspect_auth).get_json() == {"active": False}
    assert http.get("/initiate", query_string={"client_id": client.client_id}).status_code == 400

    with app.app_context():
        set_client_disabled(client.client_id, False, actor="operator:test")
    assert rp.userinfo(tokens["access_token"]).status_code == 200
    assert rp.refresh(tokens["refresh_token"]).status_code == 200


def test_the_partner_api_refuses_the_tokens_of_a_disabled_client(app, factories, http):
    partner = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:lookup")
    token = RelyingParty.for_client(http, ISSUER, partner).token_request(
        {"grant_type": "client_credentials", "scope": "partner:lookup"}).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert http.get("/api/subjects/nobody", headers=bearer).status_code == 404  # the token works
    with app.app_context():
        from app.oidc.clients import set_client_disabled

        set_client_disabled(partner.client_id, True, actor="operator:test")
    refused = http.get("/api/subjects/nobody", headers=bearer)
    assert refused.status_code == 401 and refused.get_json()["reason"] == "token_invalid"


# --- changes made by another process --------------------------------------------------------------

@pytest.fixture
def other_process(app, database_url):
    """A second app on the same database: its own caches, like another hub process."""
    from tests.conftest import make_test_app

    other = make_test_app(database_url)
    yield other
    with other.app_context():
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()


def _seen_within(check, changed_at: float, bound: float = 1.0) -> None:
    """Ask ``check()`` (True once the change is seen) again and again: every request started more
    than ``bound`` seconds after ``changed_at`` must see it (slow machines wait, they do not fail)."""
    while True:
        started = time.monotonic()
        if check():
            return
        assert started - changed_at <= bound, f"a request started {started - changed_at:.2f} s after the change did not see it"
        time.sleep(0.02)


def test_another_process_sees_a_disabled_client_and_a_tenant_policy_within_the_check_interval(
        app, other_process, factories, http, browser):
    _sign_in(factories, http, browser)
    tenant = factories.tenant()
    client = factories.client(redirect_uri="https://shop.example.org/cb", tenant=tenant)
    rp = RelyingParty.for_client(http, ISSUER, client)
    assert "Allow access" in browser.go(rp.authorization_request().url).get_data(as_text=True)  # cached here now

    with other_process.app_context():  # the operator's change, made by another process
        from app.tenants.service import set_policy

        set_policy(tenant, trust_all_clients=True)
    _seen_within(lambda: browser.go(rp.authorization_request().url).status_code == 302, time.monotonic())

    with other_process.app_context():
        from app.oidc.clients import set_client_disabled

        set_client_disabled(client.client_id, True, actor="operator:test")
    _seen_within(lambda: browser.go(rp.authorization_request().url).status_code == 400, time.monotonic())
