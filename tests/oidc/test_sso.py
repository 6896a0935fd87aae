"""The hub session across sites: silent SSO, idle and absolute timeouts, third-party-initiated
login and the login chain."""

from datetime import timedelta

from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from, query_of


def _partner(factories, tenant, host):
    return factories.client(redirect_uri=f"https://{host}/cb", tenant=tenant, trusted=True,
                            initiate_login_uri=f"https://{host}/initiate")


def test_login_at_one_site_is_login_everywhere(factories, http, browser):
    account = factories.account()
    a = factories.client(redirect_uri="https://a.example.com/cb", tenant=factories.tenant("shop"), trusted=True)
    b = factories.client(redirect_uri="https://b.example.org/cb", tenant=factories.tenant("games"), trusted=True)
    authorize(browser, RelyingParty.for_client(http, ISSUER, a), account)
    rp_b = RelyingParty.for_client(http, ISSUER, b)
    request = rp_b.authorization_request(prompt="none")
    response = browser.go(request.url)
    assert "code" in query_of(response.location)  # no page at all at site B


def test_idle_and_absolute_timeouts(app, factories, http, browser):
    account = factories.account()
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    authorize(browser, rp, account)
    with app.app_context():
        db.session.execute(text("UPDATE sso_sessions SET last_seen_at = :t"),
                           {"t": __import__("app.security", fromlist=["utcnow"]).utcnow() - timedelta(hours=3)})
        db.session.commit()
    assert query_of(browser.go(rp.authorization_request(prompt="none").url).location)["error"] == "login_required"

    authorize(browser, rp, account)
    with app.app_context():
        db.session.execute(text("UPDATE sso_sessions SET expires_at = '2000-01-01 00:00:00' WHERE ended_at IS NULL"))
        db.session.commit()
    assert query_of(browser.go(rp.authorization_request(prompt="none").url).location)["error"] == "login_required"


def test_third_party_initiated_login(factories, http):
    tenant = factories.tenant()
    partner = _partner(factories, tenant, "p.example.com")
    response = http.get("/initiate", query_string={"client_id": partner.client_id, "target_link_uri": "https://p.example.com/home",
                                                   "login_hint": "+14155550100"})
    assert response.status_code == 302 and response.location.startswith("https://p.example.com/initiate?")
    assert query_of(response.location) == {"iss": ISSUER, "target_link_uri": "https://p.example.com/home",
                                           "login_hint": "+14155550100"}
    no_uri = factories.client(redirect_uri="https://q.example.com/cb")
    assert http.get("/initiate", query_string={"client_id": no_uri.client_id}).status_code == 400


def test_login_chain_walks_partners_then_returns(app, factories, http, browser):
    account = factories.account()
    tenant = factories.tenant()
    p1 = _partner(factories, tenant, "p1.example.com")
    p2 = _partner(factories, tenant, "p2.example.net")
    broken = _partner(factories, tenant, "broken.example.org")
    with app.app_context():
        from app.tenants.service import set_policy

        set_policy(tenant, login_chain=[p1.client_id, "no-such-client", broken.client_id, p2.client_id])
    site = factories.client(redirect_uri="https://site.example.com/cb", tenant=tenant, trusted=True)
    rp = RelyingParty.for_client(http, ISSUER, site)
    request = rp.authorization_request()
    page = browser.go(request.url)
    response = browser.login(page, account.phone, account.password)

    visited = []
    for _ in range(10):
        assert response.status_code == 302
        if response.location.startswith(site.redirect_uri):
            break
        params = query_of(response.location)
        visited.append(response.location.split("/initiate")[0])
        assert params["iss"] == ISSUER and params["target_link_uri"].startswith(f"{ISSUER}/chain/")
        partner = {"https://p1.example.com": p1, "https://p2.example.net": p2}.get(visited[-1])
        if partner is not None:
            # The partner signs in silently, then hands the browser back to the hub.
            partner_rp = RelyingParty.for_client(http, ISSUER, partner)
            silent = browser.go(partner_rp.authorization_request(prompt="none").url)
            assert "code" in query_of(silent.location)
        # A broken partner never signs in; it just sends the browser on (or the user does).
        response = browser.go(params["target_link_uri"])
    assert visited == ["https://p1.example.com", "https://broken.example.org", "https://p2.example.net"]
    code = code_from(response, request)  # finally back at the site that started
    assert rp.exchange(code, request).status_code == 200

    # A later silent authorization does not start the chain again (loop-safe).
    response = browser.go(rp.authorization_request(prompt="none").url)
    assert response.location.startswith(site.redirect_uri)


def test_chain_step_is_bound_to_the_browser(app, factories, http, browser):
    account = factories.account()
    tenant = factories.tenant()
    p1 = _partner(factories, tenant, "p1.example.com")
    site = factories.client(redirect_uri="https://site.example.com/cb", tenant=tenant, trusted=True, login_chain=[p1.client_id])
    rp = RelyingParty.for_client(http, ISSUER, site)
    page = browser.go(rp.authorization_request().url)
    response = browser.login(page, account.phone, account.password)
    step = query_of(response.location)["target_link_uri"]
    assert app.test_client().get(step).status_code == 400
