"""Login and consent pages: consent remembered, denied, implied for trusted clients; CSRF; no
user enumeration; rate limits; interactions bound to their browser."""

import pytest

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from, csrf_token, query_of


@pytest.fixture
def account(factories):
    return factories.account(name="Linus")


def test_consent_is_remembered(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    request, response = authorize(browser, rp, account, scope="openid email")
    code_from(response, request)
    request = rp.authorization_request(scope="openid email")
    assert "code" in query_of(browser.go(request.url).location)  # no page the second time
    request = rp.authorization_request(scope="openid email phone")
    page = browser.go(request.url)
    assert page.status_code == 200 and "phone number" in page.get_data(as_text=True)  # more scopes: ask again


def test_consent_is_audited(app, factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    authorize(browser, rp, account, scope="openid email")
    with app.app_context():
        from app.audit import recent_events

        kinds = [e.kind for e in recent_events(account.id)]
    assert "consent.granted" in kinds and "login.success" in kinds


def test_consent_denied(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    request, page = authorize(browser, rp, account, consent=False)
    assert "Allow access" in page.get_data(as_text=True)
    response = browser.deny(page)
    params = query_of(response.location)
    assert params["error"] == "access_denied" and params["state"] == request.state and params["iss"] == ISSUER


def test_prompt_consent_asks_even_when_remembered(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    authorize(browser, rp, account)
    page = browser.go(rp.authorization_request(prompt="consent").url)
    assert "Allow access" in page.get_data(as_text=True)


def test_trusted_client_skips_consent(factories, http, browser, account):
    """A first-party client never consented to before gets a code right after login."""
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    request, response = authorize(browser, rp, account, consent=False, scope="openid profile")
    code_from(response, request)
    response = browser.go(rp.authorization_request(prompt="none").url)
    assert "code" in query_of(response.location)


def test_select_account(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    authorize(browser, rp, account)
    request = rp.authorization_request(prompt="select_account")
    page = browser.go(request.url)
    html = page.get_data(as_text=True)
    assert "Continue as" in html and "Linus" in html
    response = browser.http.post(page.request.url, data={"continue-csrf_token": csrf_token(html), "continue-submit": "Continue"})
    response = browser.go(ISSUER + response.location)
    assert "code" in query_of(response.location)


def test_wrong_password_and_unknown_user_answer_alike(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    page = browser.go(rp.authorization_request().url)
    wrong = browser.login(page, account.phone, "wrong password")
    unknown = browser.login(page, "+14155559876", "wrong password")
    assert wrong.status_code == unknown.status_code == 401
    message = "wrong identifier or password"
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)


def test_login_by_email(factories, http, browser):
    account = factories.account(email="mixed@Example.com")
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    page = browser.go(rp.authorization_request().url)
    response = browser.submit(page, {"login": "MIXED@example.com", "password": account.password, "submit": "Log in"})
    assert "code" in query_of(response.location)


def test_login_form_requires_csrf(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    page = browser.go(rp.authorization_request().url)
    response = browser.http.post(page.request.url, data={"login": account.phone, "password": account.password, "submit": "Log in"})
    assert response.status_code == 400
    assert "tessera_session" not in response.headers.get("Set-Cookie", "")


def test_interaction_is_bound_to_its_browser(factories, app, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    page = browser.go(rp.authorization_request().url)
    stranger = Browser(app.test_client(), ISSUER)
    assert stranger.go(page.request.url).status_code == 400


def test_session_cookie_flags(factories, http, browser, account):
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    page = browser.go(rp.authorization_request().url)
    response = browser.http.post(page.request.url, data={
        "login": account.phone, "password": account.password, "submit": "Log in",
        "csrf_token": csrf_token(page.get_data(as_text=True))})
    cookie = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("tessera_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def test_login_rate_limit(budgets, factories, http, browser):
    budgets(TESSERA_CREDENTIAL_BUDGET_ADDRESS="3 per minute")
    account = factories.account()
    rp = RelyingParty.for_client(http, ISSUER, factories.client())
    page = browser.go(rp.authorization_request().url)
    statuses = [browser.login(page, account.phone, "wrong").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # Even the right password is refused while the limit holds.
    assert browser.login(page, account.phone, account.password).status_code == 429
