"""Remember this browser: after a second step with the box ticked, the same browser's next login
skips it — but only at a site asking for one factor; the person forgets browsers on
/account/security; a tenant's policy can turn it off."""

from __future__ import annotations

from app.extensions import db
from app.mfa.models import TrustedBrowser
from tests.conftest import ISSUER
from tests.mfa.test_second_factor import LOA1, LOA2, _claims, _code, enrol
from tests.rp import Browser, RelyingParty, authorize


def _site_login(browser, site, person, **params):
    rp = RelyingParty(browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(browser, rp, person, **params)
    return rp, request, response


def test_a_remembered_browser_skips_the_second_step_at_one_factor_sites(app, factories):
    person = factories.account()
    account_browser, secret, _ = enrol(app, person)
    site = factories.client(trusted=True)
    browser = Browser(app.test_client(), ISSUER)
    rp, request, step = _site_login(browser, site, person)
    assert "Remember this browser for 30 days" in step.get_data(as_text=True)
    done = browser.submit(step, {"code": _code(secret), "verify": "Verify", "remember": "y"})
    assert _claims(rp, request, done)["acr"] == LOA2
    with app.app_context():
        row = db.session.scalar(db.select(TrustedBrowser).filter_by(account_id=person.id))
        assert row is not None and len(row.token_hash) == 64

    browser.http.delete_cookie("tessera_session")  # logged out of the hub, the browser remembered
    rp, request, response = _site_login(browser, site, person, prompt="login")
    assert response.status_code == 302, response.request.path
    claims = _claims(rp, request, response)
    assert claims["acr"] == LOA1 and claims["amr"] == ["pwd"]  # what really happened

    # a site that wants two factors still gets the second step
    rp, request, step = _site_login(browser, site, person, prompt="login", acr_values=LOA2)
    assert step.request.path.endswith("/mfa")

    # another browser is not remembered
    other = Browser(app.test_client(), ISSUER)
    _, _, step = _site_login(other, site, person)
    assert step.request.path.endswith("/mfa")

    # forgotten on /account/security: asked again
    page = account_browser.go(f"{ISSUER}/account/security")
    assert "Remembered browsers" in page.get_data(as_text=True)
    account_browser.submit(page, {}, url=f"{ISSUER}/account/security/browsers/forget")
    _, _, step = _site_login(browser, site, person, prompt="login")
    assert step.request.path.endswith("/mfa")


def test_a_tenant_can_turn_it_off(app, factories):
    from app.tenants.service import set_policy

    tenant = factories.tenant()
    with app.app_context():
        set_policy(tenant, remember_browser_days=0)
    person = factories.account()
    _, secret, _ = enrol(app, person)
    site = factories.client(trusted=True, tenant=tenant)
    browser = Browser(app.test_client(), ISSUER)
    _, _, step = _site_login(browser, site, person)
    assert "Remember this browser" not in step.get_data(as_text=True)
    browser.submit(step, {"code": _code(secret), "verify": "Verify", "remember": "y"})
    with app.app_context():
        assert db.session.scalar(db.select(TrustedBrowser).filter_by(account_id=person.id)) is None
