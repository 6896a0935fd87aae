"""Operators' changes to a client (`tessera clients update|rotate-secret|delete`, run through the
app's own command line) as the protocol endpoints then answer them."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from app.extensions import db
from app.oidc.models import Client, Consent, SubjectMapping, Token
from app.security import utcnow
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def _cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _cli_fails(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 1, (result.output, result.exception)
    assert "Error: " in result.output and "Traceback" not in result.output
    return result.output


def _client_credentials(http, client_id: str, secret: str):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return http.post("/token", data={"grant_type": "client_credentials", "scope": "introspection"},
                     headers={"Authorization": f"Basic {basic}"})


def _server(factories):
    return factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="introspection")


def _rotate(app, client_id: str, *args: str) -> str:
    return json.loads(_cli(app, "clients", "rotate-secret", client_id, *args, "--json").output)["client_secret"]


def test_rotated_secret_works_and_the_old_one_during_the_grace(app, factories, http):
    server = _server(factories)
    new = _rotate(app, server.client_id)
    assert new != server.client_secret
    assert _client_credentials(http, server.client_id, new).status_code == 200
    assert _client_credentials(http, server.client_id, server.client_secret).status_code == 200
    wrong = _client_credentials(http, server.client_id, "x" * 43)
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"


def test_the_old_secret_fails_after_the_grace(app, factories, http):
    server = _server(factories)
    new = _rotate(app, server.client_id, "--grace", "3600")
    assert _client_credentials(http, server.client_id, server.client_secret).status_code == 200
    with app.app_context():  # the grace ran out (a tiny grace, without sleeping)
        row = db.session.scalar(db.select(Client).filter_by(client_id=server.client_id))
        row.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    old = _client_credentials(http, server.client_id, server.client_secret)
    assert old.status_code == 401 and old.get_json()["error"] == "invalid_client"
    assert _client_credentials(http, server.client_id, new).status_code == 200


def test_grace_zero_ends_the_old_secret_at_once(app, factories, http):
    server = _server(factories)
    new = _rotate(app, server.client_id, "--grace", "0")
    old = _client_credentials(http, server.client_id, server.client_secret)
    assert old.status_code == 401 and old.get_json()["error"] == "invalid_client"
    assert _client_credentials(http, server.client_id, new).status_code == 200


def test_a_second_rotation_ends_the_first_secret(app, factories, http):
    server = _server(factories)
    second = _rotate(app, server.client_id)
    third = _rotate(app, server.client_id)
    assert _client_credentials(http, server.client_id, server.client_secret).status_code == 401
    assert _client_credentials(http, server.client_id, second).status_code == 200
    assert _client_credentials(http, server.client_id, third).status_code == 200


def test_rotation_of_a_public_client_is_refused(app, factories):
    public = factories.client(redirect_uri="http://127.0.0.1/cb", public=True)
    assert "no secret to rotate" in _cli_fails(app, "clients", "rotate-secret", public.client_id)


def _authorize_status(http, client_id: str, redirect_uri: str) -> int:
    return http.get("/authorize", query_string={
        "client_id": client_id, "response_type": "code", "scope": "openid", "redirect_uri": redirect_uri,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}).status_code


def test_updated_redirect_uris_are_the_only_ones_accepted_exactly(app, factories, http):
    client = factories.client(redirect_uri="https://shop.example.org/cb")
    assert _authorize_status(http, client.client_id, "https://shop.example.org/cb") == 302
    _cli(app, "clients", "update", client.client_id, "--redirect-uri", "https://shop.example.org/new")
    assert _authorize_status(http, client.client_id, "https://shop.example.org/cb") == 400
    assert _authorize_status(http, client.client_id, "https://shop.example.org/new") == 302
    assert _authorize_status(http, client.client_id, "https://shop.example.org/new/") == 400
    assert _authorize_status(http, client.client_id, "https://shop.example.org/new?x=1") == 400


def test_update_refuses_what_registration_refuses_and_changes_nothing(app, factories, http):
    client = factories.client(redirect_uri="https://shop.example.org/cb")
    for args, message in [
        (("--redirect-uri", "http://shop.example.org/cb"), "redirect URI"),
        (("--redirect-uri", "https://shop.example.org/cb#frag"), "fragment"),
        (("--redirect-uri", "https://elsewhere.example.net/cb"), "sector"),
        (("--backchannel-logout-uri", "ftp://shop.example.org/logout"), "backchannel_logout_uri"),
        (("--name", "  "), "name"),
    ]:
        assert message in _cli_fails(app, "clients", "update", client.client_id, *args)
    assert _authorize_status(http, client.client_id, "https://shop.example.org/cb") == 302
    assert "no client" in _cli_fails(app, "clients", "update", "unknown", "--name", "x")


def _tokens(factories, http, browser, client):
    account = factories.account()
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, account, scope="openid profile")
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 200, result.get_json()
    return rp, result.get_json()


def test_delete_refuses_live_tokens_unless_confirmed_then_the_client_is_gone(app, factories, http, browser):
    client = factories.client(redirect_uri="https://shop.example.org/cb")
    rp, tokens = _tokens(factories, http, browser, client)
    assert "live token" in _cli_fails(app, "clients", "delete", client.client_id)
    assert rp.userinfo(tokens["access_token"]).status_code == 200
    with app.app_context():
        subjects = db.session.scalar(db.select(db.func.count(SubjectMapping.id)))

    deleted = json.loads(_cli(app, "clients", "delete", client.client_id, "--yes", "--json").output)["deleted"]
    assert deleted["tokens"] == 1 and deleted["consents"] == 1

    assert rp.userinfo(tokens["access_token"]).status_code == 401
    refreshed = rp.refresh(tokens["refresh_token"])
    assert refreshed.status_code in (400, 401) and refreshed.get_json()["error"] == "invalid_client"
    page = browser.go(rp.authorization_request().url)
    assert page.status_code == 400 and "invalid_client" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Token.id))) == 0
        assert db.session.scalar(db.select(db.func.count(Consent.id))) == 0
        assert db.session.scalar(db.select(db.func.count(SubjectMapping.id))) == subjects
    assert "no client" in _cli_fails(app, "clients", "delete", client.client_id, "--yes")


def test_a_deleted_server_gets_invalid_client(app, factories, http):
    server = _server(factories)
    assert _client_credentials(http, server.client_id, server.client_secret).status_code == 200
    _cli(app, "clients", "delete", server.client_id, "--yes")
    gone = _client_credentials(http, server.client_id, server.client_secret)
    assert gone.status_code == 401 and gone.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("trust", [True, False])
def test_tenant_update_of_trust_all_clients_decides_the_consent_page(app, factories, http, browser, trust):
    tenant = factories.tenant(policy={"login_chain": [], "trust_all_clients": not trust})
    client = factories.client(redirect_uri="https://shop.example.org/cb", tenant=tenant)
    _cli(app, "tenants", "update", tenant, "--trust-all-clients" if trust else "--no-trust-all-clients")
    rp = RelyingParty.for_client(http, ISSUER, client)
    _, response = authorize(browser, rp, factories.account(), consent=False)
    asked = response.status_code == 200 and "Allow access" in response.get_data(as_text=True)
    assert asked is not trust
