"""Single logout: RP-Initiated Logout 1.0, Front-Channel Logout 1.0, Back-Channel Logout 1.0
(the OpenID Foundation logout test plans as the checklist), through HTTP."""

import re

import pytest
from joserfc import jwt

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from, csrf_token, query_of


def _login(http, browser, client, account):
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, account)
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp, tokens, rp.validate_id_token(tokens["id_token"], nonce=request.nonce)


@pytest.fixture
def account(factories):
    return factories.account()


def _site(factories, receiver, name, host):
    return factories.client(
        redirect_uri=f"https://{host}/cb", trusted=True, post_logout_redirect_uris=[f"https://{host}/bye"],
        frontchannel_logout_uri=f"https://{host}/fc-logout",
        backchannel_logout_uri=f"{receiver.url}/{name}/bc-logout", name=name,
    )


def _deliver(app):
    with app.app_context():
        from app.worker import run_once

        return run_once()


def test_discovery_advertises_logout(http):
    doc = http.get("/.well-known/openid-configuration").get_json()
    assert doc["end_session_endpoint"] == f"{ISSUER}/logout"
    assert doc["check_session_iframe"] == f"{ISSUER}/session/check"
    for flag in ("frontchannel_logout_supported", "frontchannel_logout_session_supported",
                 "backchannel_logout_supported", "backchannel_logout_session_supported"):
        assert doc[flag] is True


def test_rp_initiated_logout_ends_everything(app, factories, http, browser, account, receiver):
    site_a = _site(factories, receiver, "a", "a.example.com")
    site_b = _site(factories, receiver, "b", "b.example.org")
    rp_a, tokens_a, claims_a = _login(http, browser, site_a, account)
    rp_b, tokens_b, claims_b = _login(http, browser, site_b, account)
    assert claims_a["sid"] == claims_b["sid"]  # one hub session, two sites

    response = browser.http.get("/logout", query_string={
        "id_token_hint": tokens_b["id_token"], "post_logout_redirect_uri": "https://b.example.org/bye", "state": "xyz"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    # Front-channel: both sites' logout URLs in iframes with iss and sid.
    frames = re.findall(r'<iframe src="([^"]+)"', html)
    assert len(frames) == 2
    for frame in frames:
        params = query_of(frame.replace("&amp;", "&"))
        assert params == {"iss": ISSUER, "sid": claims_a["sid"]}
    assert '"https://b.example.org/bye?state=xyz"' in html
    assert "tessera_session=;" in response.headers.get("Set-Cookie", "") or any(
        c.startswith("tessera_session=;") for c in response.headers.getlist("Set-Cookie"))

    # The hub session is over: prompt=none now says login_required.
    assert query_of(browser.go(rp_a.authorization_request(prompt="none").url).location)["error"] == "login_required"

    # Back-channel: a logout token to each site, verifiable against the JWKS.
    assert _deliver(app) == 2
    assert {r["path"] for r in receiver.requests} == {"/a/bc-logout", "/b/bc-logout"}
    for r in receiver.requests:
        decoded = jwt.decode(r["token"], rp_a.jwks(), algorithms=["RS256"])
        assert decoded.header["typ"] == "logout+jwt"
        c = decoded.claims
        assert c["iss"] == ISSUER and c["sid"] == claims_a["sid"] and "nonce" not in c and c["jti"]
        assert c["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
        expected = claims_a if r["path"] == "/a/bc-logout" else claims_b
        assert c["aud"] == (site_a.client_id if r["path"] == "/a/bc-logout" else site_b.client_id)
        assert c["sub"] == expected["sub"]
    # The tokens issued in the session still work until they expire; introspection is unaffected.
    assert _deliver(app) == 0  # nothing left to deliver


def test_logout_without_hint_asks_for_confirmation(factories, http, browser, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    rp, tokens, _ = _login(http, browser, site, account)
    response = browser.http.get("/logout", query_string={"client_id": site.client_id,
                                                          "post_logout_redirect_uri": "https://a.example.com/bye"})
    assert response.status_code == 302 and "/logout/confirm" in response.location
    page = browser.http.get(response.location)
    assert "Log out?" in page.get_data(as_text=True)
    # Without the CSRF token nothing happens.
    assert browser.http.post(response.location, data={"submit": "Log out"}).status_code == 400
    assert "code" in query_of(browser.go(rp.authorization_request(prompt="none").url).location)
    done = browser.http.post(response.location, data={"submit": "Log out", "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200 and "https://a.example.com/bye" in done.get_data(as_text=True)
    assert query_of(browser.go(rp.authorization_request(prompt="none").url).location)["error"] == "login_required"


def test_hint_of_another_session_is_not_trusted(factories, app, http, browser, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    _login(http, browser, site, account)
    from tests.rp import Browser

    other = Browser(app.test_client(), ISSUER)
    _, other_tokens, _ = _login(other.http, other, site, factories.account())
    response = browser.http.get("/logout", query_string={"id_token_hint": other_tokens["id_token"]})
    assert response.status_code == 302 and "/logout/confirm" in response.location


@pytest.mark.parametrize("params,detail", [
    ({"post_logout_redirect_uri": "https://a.example.com/bye"}, "needs id_token_hint or client_id"),
    ({"client_id": "SITE", "post_logout_redirect_uri": "https://evil.example/bye"}, "not registered"),
    ({"id_token_hint": "garbage"}, "not an ID token"),
    ({"client_id": "nope"}, "unknown client_id"),
])
def test_bad_logout_requests_never_redirect(factories, http, browser, account, receiver, params, detail):
    site = _site(factories, receiver, "a", "a.example.com")
    params = {k: (site.client_id if v == "SITE" else v) for k, v in params.items()}
    response = http.get("/logout", query_string=params)
    assert response.status_code == 400 and detail in response.get_data(as_text=True)


def test_mismatched_client_id_and_hint(factories, http, browser, account, receiver):
    site_a = _site(factories, receiver, "a", "a.example.com")
    site_b = _site(factories, receiver, "b", "b.example.org")
    _, tokens, _ = _login(http, browser, site_a, account)
    response = http.get("/logout", query_string={"id_token_hint": tokens["id_token"], "client_id": site_b.client_id})
    assert response.status_code == 400


def test_logout_without_session_still_redirects(factories, http, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    response = http.get("/logout", query_string={"client_id": site.client_id,
                                                 "post_logout_redirect_uri": "https://a.example.com/bye", "state": "s"})
    assert response.status_code == 200 and "https://a.example.com/bye?state=s" in response.get_data(as_text=True)


def test_session_state_and_check_session_iframe(factories, http, browser, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    rp = RelyingParty.for_client(http, ISSUER, site)
    request, response = authorize(browser, rp, account)
    state = query_of(response.location)["session_state"]
    digest, salt = state.rsplit(".", 1)
    import hashlib

    browser_state = _browser_state_cookie(browser).rpartition(".")[0]  # "<state>.<idle deadline>"
    expected = hashlib.sha256(f"{site.client_id} https://a.example.com {browser_state} {salt}".encode()).hexdigest()
    assert digest == expected
    page = http.get("/session/check")
    assert page.status_code == 200 and "postMessage" in page.get_data(as_text=True)


def _browser_state_cookie(browser) -> str:
    return [c for c in browser.http._cookies.values() if c.key == "tessera_bs"][0].value


def test_browser_state_cookie_carries_the_idle_deadline_and_use_moves_it(app, factories, http, browser, account, receiver):
    """Session Management with idle timeouts: the check_session iframe can only tell an idle-expired
    session if the cookie it reads says when the session goes idle (tests/e2e/test_sso.py runs the
    iframe itself past that deadline). Using the hub moves the deadline."""
    import time

    site = _site(factories, receiver, "a", "a.example.com")
    _login(http, browser, site, account)
    idle = app.config["TESSERA_SESSION_IDLE_TTL"]
    state, _, deadline = _browser_state_cookie(browser).rpartition(".")
    assert len(state) == 32 and abs(int(deadline) - (time.time() + idle)) < 120

    with app.app_context():  # the session was last used an hour ago
        from sqlalchemy import text

        db.session.execute(text("UPDATE sso_sessions SET last_seen_at = last_seen_at - INTERVAL '1' HOUR")
                           if db.engine.dialect.name == "postgresql"
                           else text("UPDATE sso_sessions SET last_seen_at = datetime(last_seen_at, '-1 hour')"))
        db.session.commit()
    browser.http.get("/")  # any page of the hub that sees the session records its use
    state_after, _, moved = _browser_state_cookie(browser).rpartition(".")
    assert state_after == state and abs(int(moved) - (time.time() + idle)) < 120

    with app.app_context():  # now it has idled past the deadline: the hub agrees it is over
        db.session.execute(text("UPDATE sso_sessions SET last_seen_at = '2000-01-01 00:00:00'"))
        db.session.commit()
    assert "/account/login" in browser.http.get("/account/").location


def test_timed_out_session_tells_its_clients(app, factories, http, browser, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    _, _, claims = _login(http, browser, site, account)
    with app.app_context():
        from sqlalchemy import text

        db.session.execute(text("UPDATE sso_sessions SET expires_at = '2000-01-01 00:00:00'"))
        db.session.commit()
    assert _deliver(app) == 1  # the worker ends the timed-out session and delivers its logout token
    assert [r["claims"]["sid"] for r in receiver.requests] == [claims["sid"]]


def test_login_as_someone_else_logs_the_previous_user_out(factories, http, browser, account, receiver, app):
    site = _site(factories, receiver, "a", "a.example.com")
    rp, _, first = _login(http, browser, site, account)
    other = factories.account()
    page = browser.go(rp.authorization_request(prompt="login").url)
    browser.login(page, other.phone, other.password)
    _deliver(app)
    assert [r["claims"]["sub"] for r in receiver.requests] == [first["sub"]]


def test_logout_token_not_retried_past_its_expiry(app, factories, http, browser, account, receiver):
    site = _site(factories, receiver, "a", "a.example.com")
    rp, tokens, _ = _login(http, browser, site, account)
    receiver.status = 503
    browser.http.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert _deliver(app) == 1
    with app.app_context():
        from sqlalchemy import text

        db.session.execute(text("UPDATE outbox_events SET expires_at = '2000-01-01 00:00:00', next_attempt_at = '2000-01-01 00:00:00'"))
        db.session.commit()
        _deliver(app)
        assert db.session.execute(text("SELECT status FROM outbox_events")).scalar() == "expired"
    assert len(receiver.requests) == 1
