"""The admin console (/admin) through HTTP: the login through the hub's own code flow with PKCE,
each page and action (audited with the admin as actor), CSRF, and the role and reach refusals."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from tests.admin.conftest import Operator
from tests.conftest import ISSUER
from tests.rp import RelyingParty, csrf_token


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_login_goes_through_the_hubs_code_flow_with_pkce(app, factories, console_client):
    op = Operator(app, factories, "super")
    start = op.http.get("/admin/login")
    assert start.status_code == 302
    params = {k: v[0] for k, v in parse_qs(urlsplit(start.location).query).items()}
    assert urlsplit(start.location).path == "/authorize"
    assert params["client_id"] == console_client and params["scope"] == "openid admin"
    assert params["code_challenge_method"] == "S256" and params["state"] and params["nonce"]
    assert params["redirect_uri"] == ISSUER + "/admin/callback"
    home = op.log_in()
    assert home.status_code == 200 and "Dashboard" in _text(home)
    assert f"admin:{op.account.id}" in _text(home)
    assert op.get("/admin/people").status_code == 200


def test_anonymous_is_sent_to_login_and_a_forged_callback_is_refused(http, console_client):
    response = http.get("/admin/people")
    assert response.status_code == 302 and response.location.endswith("/admin/login")
    assert http.get("/admin/callback?code=x&state=y").status_code == 400


def test_callback_with_a_wrong_state_is_refused(app, factories, console_client):
    op = Operator(app, factories, "super")
    start = op.http.get("/admin/login")
    page = op.browser.go(start.location)
    result = op.http.post(page.request.url, data={"csrf_token": csrf_token(_text(page)), "login": op.account.phone,
                                                 "password": op.account.password, "submit": "Log in"})
    # follow the hub until it sends the browser back to the console, then tamper with the state
    while result.status_code in (302, 303) and "/admin/callback" not in result.location:
        result = op.http.get(result.location)
    assert "/admin/callback" in result.location
    forged = re.sub(r"state=[^&]+", "state=forged", result.location)
    assert op.http.get(forged).status_code == 400
    assert op.http.get("/admin/").status_code == 302  # not logged in


def test_a_person_without_a_role_sees_not_an_admin(operator):
    op = operator(None)
    response = op.get("/admin/")
    assert response.status_code == 403 and "You are not an admin" in _text(response)


def test_logout_revokes_and_forgets_the_token(app, operator):
    from app.extensions import db
    from app.oidc.models import Token

    op = operator("super")

    def live_tokens() -> int:
        with app.app_context():
            return len(list(db.session.scalars(db.select(Token).filter_by(account_id=op.account.id, revoked_at=None))))

    assert live_tokens() == 1
    assert op.post_form("/admin/", "/admin/logout").status_code == 200
    assert op.get("/admin/").status_code == 302
    assert live_tokens() == 0


def test_search_by_phone_as_typed_lock_unlock_and_end_sessions(app, operator, factories):
    op = operator("support")
    person = factories.account(phone="+14155550142")
    found = op.get("/admin/people?by=phone&q=(415) 555-0142")
    assert found.status_code == 200 and f"/admin/people/{person.id}" in _text(found)
    page = op.get(f"/admin/people/{person.id}")
    assert 'name="reason"' in _text(page) and "End all sessions" in _text(page)

    # no reason: the service refuses, the page says so
    refused = op.post_form(f"/admin/people/{person.id}", f"/admin/people/{person.id}/lock", {"reason": " "})
    assert refused.status_code == 303
    assert "a reason is required" in _text(op.get(f"/admin/people/{person.id}"))

    locked = op.post_form(f"/admin/people/{person.id}", f"/admin/people/{person.id}/lock", {"reason": "fraud report"})
    assert locked.status_code == 303
    page = _text(op.get(f"/admin/people/{person.id}"))
    assert '<dd id="status">locked</dd>' in page and "Unlock" in page
    assert op.post_form(f"/admin/people/{person.id}", f"/admin/people/{person.id}/unlock").status_code == 303
    assert op.post_form(f"/admin/people/{person.id}", f"/admin/people/{person.id}/logout").status_code == 303
    page = _text(op.get(f"/admin/people/{person.id}"))
    assert '<dd id="status">active</dd>' in page
    actor = f"admin:{op.account.id}"
    for kind in ("account.locked", "account.unlocked", "account.logged_out"):
        assert re.search(rf"<td>{re.escape(kind)}</td><td>{re.escape(actor)}</td>", page), kind


def test_csrf_is_required_on_every_form(operator, factories):
    op = operator("super")
    person = factories.account()
    assert op.http.post(f"/admin/people/{person.id}/lock", data={"reason": "x"}).status_code == 400
    assert op.http.post(f"/admin/people/{person.id}/lock", data={"reason": "x", "csrf_token": "nope"}).status_code == 400
    assert '<dd id="status">active</dd>' in _text(op.get(f"/admin/people/{person.id}"))


def test_clients_disable_enable_and_rotate_secret_shown_once(operator, factories):
    op = operator("super")
    site = factories.client()
    page = _text(op.get(f"/admin/clients/{site.client_id}"))
    assert site.redirect_uri in page and "Rotate secret" in page
    assert site.client_id in _text(op.get("/admin/clients?cursor="))
    assert op.post_form(f"/admin/clients/{site.client_id}", f"/admin/clients/{site.client_id}/disable").status_code == 303
    assert '<dd id="client-state">disabled</dd>' in _text(op.get(f"/admin/clients/{site.client_id}"))
    assert op.post_form(f"/admin/clients/{site.client_id}", f"/admin/clients/{site.client_id}/enable").status_code == 303
    rotated = op.post_form(f"/admin/clients/{site.client_id}", f"/admin/clients/{site.client_id}/rotate-secret")
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    secret = re.search(r'<output id="new-secret" class="secret">([^<]+)</output>', _text(rotated)).group(1)
    assert len(secret) >= 32
    assert secret not in _text(op.get(f"/admin/clients/{site.client_id}"))
    # the new secret authenticates the client at the token endpoint (a wrong one is invalid_client)
    good = RelyingParty(op.http, ISSUER, site.client_id, secret, site.redirect_uri)
    bad = RelyingParty(op.http, ISSUER, site.client_id, secret + "x", site.redirect_uri)
    assert bad.token_request({"grant_type": "client_credentials"}).status_code == 401
    assert good.token_request({"grant_type": "client_credentials"}).status_code != 401
    audit_page = _text(op.get(f"/admin/audit?client={site.client_id}"))
    for kind in ("client.disabled", "client.enabled", "client.secret_rotated"):
        assert kind in audit_page, kind


def test_support_may_not_rotate_secrets_or_see_keys(operator, factories):
    op = operator("support")
    site = factories.client()
    token = csrf_token(_text(op.get("/admin/people")))
    assert op.http.post(f"/admin/clients/{site.client_id}/rotate-secret", data={"csrf_token": token}).status_code == 403
    assert op.get(f"/admin/clients/{site.client_id}").status_code == 403
    assert op.get("/admin/keys").status_code == 403
    assert op.get("/admin/audit").status_code == 403
    assert op.http.post("/admin/keys/rotate", data={"csrf_token": token}).status_code == 403


def test_auditor_reads_but_sees_no_buttons_and_may_not_write(operator, factories):
    op = operator("auditor")
    person = factories.account()
    page = _text(op.get(f"/admin/people/{person.id}"))
    assert "Lock" not in page and "End all sessions" not in page
    token = csrf_token(page)
    assert op.http.post(f"/admin/people/{person.id}/lock", data={"csrf_token": token, "reason": "x"}).status_code == 403


def test_tenant_admin_reaches_only_its_tenant(app, operator, factories):
    mine, other = factories.tenant(), factories.tenant()
    my_site, their_site = factories.client(tenant=mine), factories.client(tenant=other)
    op = operator("tenant_admin", mine)
    assert op.get(f"/admin/clients/{my_site.client_id}").status_code == 200
    assert op.get(f"/admin/clients/{their_site.client_id}").status_code == 404
    stranger = factories.account()
    assert op.get(f"/admin/people/{stranger.id}").status_code == 404
    assert f"/admin/people/{stranger.id}" not in _text(op.get(f"/admin/people?by=phone&q={stranger.phone}"))
    tenants = _text(op.get("/admin/tenants"))
    assert f"<td>{mine}</td>" in tenants and f"<td>{other}</td>" not in tenants


def test_dashboard_deliveries_keys_and_audit_pages(operator):
    op = operator("super")
    home = _text(op.get("/admin/"))
    assert "<svg" in home and 'id="chart-logins"' in home and "<script" not in home
    assert op.get("/admin/deliveries").status_code == 200
    keys = op.get("/admin/keys")
    assert keys.status_code == 200 and "Rotate signing keys" in _text(keys)
    assert op.post_form("/admin/keys", "/admin/keys/rotate").status_code == 303
    audit_page = op.get(f"/admin/audit?kind=keys.*&actor=admin:{op.account.id}")
    assert "keys.rotated" in _text(audit_page)
    assert op.get("/admin/audit?person=abc").status_code == 400
    assert op.get("/admin/audit?cursor=!!").status_code == 400
    assert op.get("/admin/people/99999999999").status_code == 404


def test_console_client_command_is_idempotent(app, factories):
    tenant = factories.tenant()
    runner = app.test_cli_runner()
    first = runner.invoke(args=["admins", "console-client", "--tenant", tenant, "--json"])
    assert first.exit_code == 0 and '"changed": true' in first.output, first.output
    again = runner.invoke(args=["admins", "console-client", "--tenant", tenant])
    assert again.exit_code == 0 and "already registered" in again.output, again.output


def test_a_dead_token_sends_the_browser_back_to_login(app, operator):
    """Locking the operator's own account kills their tokens: the console asks for a login again."""
    op = operator("super")
    result = app.test_cli_runner().invoke(args=["users", "lock", str(op.account.id), "--reason", "left the team"])
    assert result.exit_code == 0, result.output
    response = op.get("/admin/")
    assert response.status_code == 302 and response.location.endswith("/admin/login")
