"""Two-step verification through the pages like a browser: setting up an authenticator app on
/account/security, the second-factor step of a login, recovery codes, the assurance levels a site
asks for (acr_values, an essential acr claim, the client's default_acr_values, the tenant's
require_mfa), step-up of a live session, and the acr and amr the ID token then carries."""

from __future__ import annotations

import json
import re
import time

import pyotp

from app.crypto import decrypt_json
from app.extensions import db
from app.mfa.models import TotpFactor
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from

LOA1, LOA2 = "urn:tessera:loa:1", "urn:tessera:loa:2"


def _secret(app, account_id: int) -> str:
    with app.app_context():
        return decrypt_json(db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id)).secret_encrypted)


def _code(secret: str, steps_from_now: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_from_now)


def _hub_login(app, account) -> Browser:
    browser = Browser(app.test_client(), ISSUER)
    page = browser.login(browser.go(f"{ISSUER}/account/login"), account.phone, account.password)
    assert page.request.path == "/account/", page.get_data(as_text=True)[:300]
    return browser


def enrol(app, account) -> tuple[Browser, str, list[str]]:
    """Set up an authenticator app on /account/security; the browser, the secret and the recovery codes."""
    browser = _hub_login(app, account)
    page = browser.go(f"{ISSUER}/account/security/totp")
    assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)
    secret = _secret(app, account.id)
    wrong = browser.submit(page, {"code": "000000", "verify": "Verify"})
    assert wrong.status_code == 401
    done = browser.submit(wrong, {"code": _code(secret, -1), "verify": "Verify"})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and 'id="recovery-codes"' in html
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", html)
    assert len(codes) == 10
    return browser, secret, codes


def _rp(app, client) -> tuple[Browser, RelyingParty]:
    browser = Browser(app.test_client(), ISSUER)
    return browser, RelyingParty(browser.http, ISSUER, client.client_id, client.client_secret, client.redirect_uri)


def _claims(rp, request, response) -> dict:
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp.validate_id_token(tokens["id_token"], nonce=request.nonce)


def test_a_login_asks_the_authenticator_code_and_the_id_token_says_mfa(app, factories):
    person = factories.account()
    _, secret, _ = enrol(app, person)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    assert step.status_code == 200 and step.request.path.endswith("/mfa"), step.request.path
    wrong = browser.submit(step, {"code": "123456", "verify": "Verify"})
    assert wrong.status_code == 401 and "not right" in wrong.get_data(as_text=True)
    done = browser.submit(wrong, {"code": _code(secret), "verify": "Verify"})
    claims = _claims(rp, request, done)
    assert claims["acr"] == LOA2 and claims["amr"] == ["mfa", "otp", "pwd"]


def test_a_code_is_never_accepted_twice(app, factories):
    person = factories.account()
    _, secret, _ = enrol(app, person)
    site = factories.client(trusted=True)
    code = _code(secret)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    _claims(rp, request, browser.submit(step, {"code": code, "verify": "Verify"}))
    again_browser, again_rp = _rp(app, site)
    _, step = authorize(again_browser, again_rp, person)
    replay = again_browser.submit(step, {"code": code, "verify": "Verify"})
    assert replay.status_code == 401 and "used already" in replay.get_data(as_text=True)
    # an earlier code than the last one used is refused too
    assert again_browser.submit(replay, {"code": _code(secret, -1), "verify": "Verify"}).status_code == 401


def test_a_recovery_code_works_once(app, factories):
    person = factories.account()
    _, _, codes = enrol(app, person)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    claims = _claims(rp, request, browser.submit(step, {"recovery_code": codes[0].upper(), "use_recovery": "Use"}))
    assert claims["acr"] == LOA2
    browser, rp = _rp(app, site)
    _, step = authorize(browser, rp, person)
    reused = browser.submit(step, {"recovery_code": codes[0], "use_recovery": "Use"})
    assert reused.status_code == 401


def test_the_account_centers_own_login_asks_it_too(app, factories):
    person = factories.account()
    _, secret, _ = enrol(app, person)
    browser = Browser(app.test_client(), ISSUER)
    page = browser.login(browser.go(f"{ISSUER}/account/login"), person.phone, person.password)
    assert page.request.path == "/account/login/mfa"
    assert browser.go(f"{ISSUER}/account/").request.path == "/account/login"  # not logged in yet
    page = browser.go(f"{ISSUER}/account/login/mfa")
    done = browser.submit(page, {"code": _code(secret), "verify": "Verify"})
    assert done.request.path == "/account/"


def test_voluntary_acr_values_give_what_the_person_has(app, factories):
    person = factories.account()
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, response = authorize(browser, rp, person, acr_values=LOA2)
    assert _claims(rp, request, response)["acr"] == LOA1


def test_an_essential_acr_makes_a_person_without_a_second_factor_set_one_up(app, factories):
    person = factories.account()
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    claims_request = json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA2]}}})
    request, step = authorize(browser, rp, person, claims=claims_request)
    assert step.request.path.endswith("/mfa") and "Set up two-step verification" in step.get_data(as_text=True)
    secret = _secret(app, person.id)
    claims = _claims(rp, request, browser.submit(step, {"code": _code(secret), "verify": "Verify"}))
    assert claims["acr"] == LOA2 and "otp" in claims["amr"]


def test_client_and_tenant_policies_require_mfa(app, factories):
    from app.tenants.service import set_policy

    strict_tenant = factories.tenant()
    with app.app_context():
        set_policy(strict_tenant, require_mfa=True)
    for site in (factories.client(trusted=True, default_acr_values=[LOA2]),
                 factories.client(trusted=True, tenant=strict_tenant)):
        person = factories.account()
        browser, rp = _rp(app, site)
        _, step = authorize(browser, rp, person)
        assert step.request.path.endswith("/mfa"), step.request.path


def test_step_up_asks_only_the_missing_factor(app, factories):
    person = factories.account()
    _, secret, _ = enrol(app, person)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    first = _claims(rp, request, browser.submit(step, {"code": _code(secret), "verify": "Verify"}))
    assert first["acr"] == LOA2
    # a plain password session elsewhere, then a site asking for multi-factor
    other = factories.account()
    plain_browser = Browser(app.test_client(), ISSUER)
    plain_rp = RelyingParty(plain_browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(plain_browser, plain_rp, other)
    assert _claims(plain_rp, request, response)["acr"] == LOA1
    silent = plain_browser.go(plain_rp.authorization_request(acr_values=LOA2, prompt="none").url)
    assert "error=login_required" in silent.location
    request = plain_rp.authorization_request(
        claims=json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA2]}}}))
    page = plain_browser.go(request.url)
    # no password asked again: straight to setting up the second factor for the logged-in person
    assert page.request.path.endswith("/mfa") and 'name="password"' not in page.get_data(as_text=True)
    done = plain_browser.submit(page, {"code": _code(_secret(app, other.id)), "verify": "Verify"})
    claims = _claims(plain_rp, request, done)
    assert claims["acr"] == LOA2 and claims["amr"] == ["mfa", "otp", "pwd"]


def test_security_page_needs_a_login_and_removing_the_app_turns_it_off(app, factories, http):
    assert http.get("/account/security").status_code == 302
    person = factories.account()
    browser, _, _ = enrol(app, person)
    page = browser.go(f"{ISSUER}/account/security")
    assert "Two-step verification is on" in page.get_data(as_text=True)
    browser.submit(page, {}, url=f"{ISSUER}/account/security/totp/remove")
    assert "Two-step verification is off" in browser.go(f"{ISSUER}/account/security").get_data(as_text=True)
    site = factories.client(trusted=True)
    rp_browser, rp = _rp(app, site)
    request, response = authorize(rp_browser, rp, person)
    assert response.status_code == 302  # no second step any more


def test_an_operator_resets_the_second_factors(app, factories):
    person = factories.account()
    enrol(app, person)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "reset-mfa", str(person.id), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["removed"] == {"totp": 11}  # the app and its ten recovery codes
    again = runner.invoke(args=["users", "reset-mfa", str(person.id)])
    assert again.exit_code == 1 and "no second factor" in again.output
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    _, response = authorize(browser, rp, person)
    assert response.status_code == 302  # the password alone again
    from app.accounts.models import AuditEvent
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).filter_by(account_id=person.id, kind="mfa.reset"))
        assert event.actor == "operator:cli"


def test_operators_set_the_policies_by_cli_and_admin_api(app, factories, http, admins):
    tenant = factories.tenant()
    site = factories.client(tenant=tenant, trusted=True)
    runner = app.test_cli_runner()
    bad = runner.invoke(args=["clients", "update", site.client_id, "--default-acr-value", "gold"])
    assert bad.exit_code == 1 and "unsupported acr values" in bad.output
    ok = runner.invoke(args=["clients", "update", site.client_id, "--default-acr-value", LOA2, "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["default_acr_values"] == [LOA2]
    person = factories.account()
    browser, rp = _rp(app, site)
    _, step = authorize(browser, rp, person)
    assert step.request.path.endswith("/mfa")
    assert runner.invoke(args=["clients", "update", site.client_id, "--no-default-acr-values"]).exit_code == 0

    admin = admins.client_token("super")
    shown = http.get(f"/api/admin/v1/tenants/{tenant}", headers=admin.headers)
    changed = http.patch(f"/api/admin/v1/tenants/{tenant}", json={"policy": {"require_mfa": True}},
                         headers={**admin.headers, "If-Match": shown.headers["ETag"]})
    assert changed.status_code == 200 and changed.get_json()["policy"]["require_mfa"] is True
    browser, rp = _rp(app, site)
    _, step = authorize(browser, rp, factories.account())
    assert step.request.path.endswith("/mfa")
    assert runner.invoke(args=["tenants", "update", tenant, "--no-require-mfa"]).exit_code == 0
    browser, rp = _rp(app, site)
    _, response = authorize(browser, rp, factories.account())
    assert response.status_code == 302


def test_the_admin_api_resets_second_factors_for_a_super_admin_only(app, factories, http, admins):
    person = factories.account()
    enrol(app, person)
    support = admins.client_token("support")
    assert http.post(f"/api/admin/v1/users/{person.id}/reset-mfa", headers=support.headers).status_code == 403
    admin = admins.client_token("super")
    reset = http.post(f"/api/admin/v1/users/{person.id}/reset-mfa", headers=admin.headers)
    assert reset.status_code == 200 and reset.get_json()["removed"]["totp"] == 11
    assert http.post(f"/api/admin/v1/users/{person.id}/reset-mfa", headers=admin.headers).status_code == 409

