"""Security headers (the anonymous actor's clickjacking and referrer leaks): no hub page can be
framed by another site — except the check_session iframe, whose whole point is to be framed by
relying parties — page addresses never leave the hub in a Referer, and nothing is sniffed."""

from __future__ import annotations

import pytest

from tests.conftest import ISSUER
from tests.rp import RelyingParty


def _assert_unframeable(response):
    assert response.mimetype == "text/html"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/account/login", "/logout", "/authorize?client_id=unknown"])
def test_pages_cannot_be_framed_and_do_not_leak_their_address(http, path):
    response = http.get(path)
    assert response.status_code in (200, 400)
    _assert_unframeable(response)


def test_interaction_pages_login_consent_and_account_cannot_be_framed(http, browser, factories):
    account = factories.account()
    request = RelyingParty.for_client(http, ISSUER, factories.client()).authorization_request()
    login = browser.go(request.url)
    assert 'name="login"' in login.get_data(as_text=True)
    _assert_unframeable(login)
    consent = browser.login(login, account.phone, account.password)
    assert consent.status_code == 200 and 'name="approve"' in consent.get_data(as_text=True)
    _assert_unframeable(consent)
    otp = browser.go(login.request.url.replace("/login", "/otp"))
    _assert_unframeable(otp)
    account_page = browser.go("http://localhost/account/")
    assert account_page.status_code == 200
    _assert_unframeable(account_page)


def test_check_session_iframe_is_the_one_page_relying_parties_may_frame(http):
    response = http.get("/session/check")
    assert response.status_code == 200
    assert "X-Frame-Options" not in response.headers
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors *" in policy and "'none'" in policy  # default-src 'none' stays
    assert "frame-ancestors 'none'" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_json_answers_are_not_sniffed(http):
    response = http.get("/jwks")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in response.headers
