"""The OpenID Foundation's Basic OP certification plan, one test per module, through HTTP.
Module names are in each test's docstring."""

import time

import pytest

from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from, query_of


@pytest.fixture
def account(factories):
    return factories.account(
        email="grace@example.com", name="Grace Hopper", given_name="Grace", family_name="Hopper",
        nickname="amazing", address={"street_address": "1 Navy Way", "locality": "Arlington", "country": "US"},
    )


@pytest.fixture
def client(factories):
    return factories.client()


@pytest.fixture
def rp(http, client):
    return RelyingParty.for_client(http, ISSUER, client)


def _tokens(rp, request, response):
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 200, result.get_json()
    return result.get_json()


def test_response_type_missing(browser, client):
    """oidcc-response-type-missing: an error, redirected to the verified redirect URI."""
    response = browser.go(f"/authorize?client_id={client.client_id}&redirect_uri={client.redirect_uri}&scope=openid&state=s1")
    assert response.status_code == 302
    params = query_of(response.location)
    assert response.location.startswith(client.redirect_uri)
    assert params["error"] == "unsupported_response_type" and params["state"] == "s1" and params["iss"] == ISSUER


def test_unsupported_response_type_token(browser, client):
    response = browser.go(f"/authorize?client_id={client.client_id}&redirect_uri={client.redirect_uri}"
                          "&scope=openid&response_type=token&state=s1")
    assert query_of(response.location)["error"] == "unsupported_response_type"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_idtoken_signature(factories, http, browser, account, alg):
    """oidcc-idtoken-signature (+ ES256 offered): the ID token verifies against the JWKS."""
    client = factories.client(id_token_signed_response_alg=alg)
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, account)
    tokens = _tokens(rp, request, response)
    header = __import__("joserfc").jws.extract_compact(tokens["id_token"].encode()).protected
    assert header["alg"] == alg and header["kid"]
    rp.validate_id_token(tokens["id_token"], nonce=request.nonce, access_token=tokens["access_token"])


@pytest.mark.parametrize("how", ["header", "post-header", "post-body"])
def test_userinfo(browser, rp, account, how):
    """oidcc-userinfo-get, oidcc-userinfo-post-header, oidcc-userinfo-post-body."""
    request, response = authorize(browser, rp, account)
    tokens = _tokens(rp, request, response)
    sub = rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]
    result = rp.userinfo(tokens["access_token"], how=how)
    assert result.status_code == 200 and result.get_json()["sub"] == sub


def test_userinfo_rejects_bad_tokens(http, browser, rp, account):
    result = http.get("/userinfo")
    assert result.status_code == 401 and 'error="invalid_request"' in result.headers["WWW-Authenticate"]
    result = http.get("/userinfo", headers={"Authorization": "Bearer not-a-token"})
    assert result.status_code == 401 and 'error="invalid_token"' in result.headers["WWW-Authenticate"]


def test_request_without_nonce(browser, rp, account):
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow."""
    request, response = authorize(browser, rp, account, nonce=None)
    tokens = _tokens(rp, request, response)
    claims = rp.validate_id_token(tokens["id_token"])
    assert "nonce" not in claims


@pytest.mark.parametrize("scope,expected,absent", [
    ("openid profile", {"name": "Grace Hopper", "given_name": "Grace", "nickname": "amazing"}, ["email", "phone_number"]),
    ("openid email", {"email": "grace@example.com", "email_verified": True}, ["name", "phone_number"]),
    ("openid address", {"address": {"street_address": "1 Navy Way", "locality": "Arlington", "country": "US"}}, ["email"]),
    ("openid phone", {"phone_number_verified": True}, ["email", "name"]),
    ("openid profile email address phone", {"name": "Grace Hopper", "email": "grace@example.com"}, []),
])
def test_scopes(browser, rp, account, scope, expected, absent):
    """oidcc-scope-profile, -email, -address, -phone, -all."""
    request, response = authorize(browser, rp, account, scope=scope)
    tokens = _tokens(rp, request, response)
    info = rp.userinfo(tokens["access_token"]).get_json()
    for claim, value in expected.items():
        assert info[claim] == value
    for claim in absent:
        assert claim not in info
    if "phone" in scope:
        assert info["phone_number"] == account.phone


def test_prompt_login_forces_reauthentication(browser, rp, account):
    """oidcc-prompt-login: a second request with prompt=login shows the login page again."""
    request, response = authorize(browser, rp, account)
    first = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    time.sleep(1.1)
    request = rp.authorization_request(prompt="login")
    page = browser.go(request.url)
    assert page.status_code == 200 and 'name="login"' in page.get_data(as_text=True)
    response = browser.login(page, account.phone, account.password)
    second = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    assert second["auth_time"] > first["auth_time"] and second["sub"] == first["sub"]
    assert second["sid"] != first["sid"]  # a new login is a new session (no fixation)


def test_prompt_none_not_logged_in(browser, rp):
    """oidcc-prompt-none-not-logged-in: login_required, redirected, no page."""
    request = rp.authorization_request(prompt="none")
    response = browser.go(request.url)
    params = query_of(response.location)
    assert params["error"] == "login_required" and params["state"] == request.state and params["iss"] == ISSUER


def test_prompt_none_logged_in(browser, rp, account):
    """oidcc-prompt-none-logged-in: a code without any page."""
    request, response = authorize(browser, rp, account)
    first = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    request = rp.authorization_request(prompt="none")
    response = browser.go(request.url)
    claims = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    assert claims["sub"] == first["sub"] and claims["auth_time"] == first["auth_time"]


def test_prompt_none_without_consent(factories, http, browser, account):
    """prompt=none with a session but no consent for this client: consent_required."""
    rp_a = RelyingParty.for_client(http, ISSUER, factories.client())
    authorize(browser, rp_a, account)
    rp_b = RelyingParty.for_client(http, ISSUER, factories.client(redirect_uri="https://other.example.org/cb"))
    request = rp_b.authorization_request(prompt="none")
    assert query_of(browser.go(request.url).location)["error"] == "consent_required"


def test_prompt_none_combined_is_invalid(browser, rp, account):
    request = rp.authorization_request(prompt="none login")
    assert query_of(browser.go(request.url).location)["error"] == "invalid_request"


def test_max_age_1(browser, rp, account):
    """oidcc-max-age-1: after more than 1 s the user logs in again; auth_time is fresh."""
    request, response = authorize(browser, rp, account)
    first = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    time.sleep(2.1)
    request = rp.authorization_request(max_age="1")
    page = browser.go(request.url)
    assert 'name="login"' in page.get_data(as_text=True)
    response = browser.login(page, account.phone, account.password)
    claims = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce, max_age=1)
    assert claims["auth_time"] >= first["auth_time"] + 2


def test_max_age_10000(browser, rp, account):
    """oidcc-max-age-10000: the session is young enough, no login, auth_time is present."""
    request, response = authorize(browser, rp, account)
    first = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    request = rp.authorization_request(max_age="10000")
    response = browser.go(request.url)
    claims = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce, max_age=10000)
    assert claims["auth_time"] == first["auth_time"]


def test_max_age_malformed(browser, rp):
    request = rp.authorization_request(max_age="soon")
    assert query_of(browser.go(request.url).location)["error"] == "invalid_request"


def test_id_token_hint(browser, rp, account):
    """oidcc-id-token-hint: prompt=none with the hint of the logged-in user succeeds."""
    request, response = authorize(browser, rp, account)
    id_token = _tokens(rp, request, response)["id_token"]
    request = rp.authorization_request(prompt="none", id_token_hint=id_token)
    response = browser.go(request.url)
    assert "code" in query_of(response.location)


def test_id_token_hint_of_another_user(factories, http, app, browser, rp, account):
    """id_token_hint naming a different user than the session's, with prompt=none: login_required."""
    other = factories.account()
    other_browser = type(browser)(app.test_client(), ISSUER)
    other_rp = RelyingParty(other_browser.http, ISSUER, rp.client_id, rp.client_secret, rp.redirect_uri)
    request, response = authorize(other_browser, other_rp, other)
    other_id_token = _tokens(other_rp, request, response)["id_token"]

    authorize(browser, rp, account)
    request = rp.authorization_request(prompt="none", id_token_hint=other_id_token)
    assert query_of(browser.go(request.url).location)["error"] == "login_required"
    request = rp.authorization_request(prompt="none", id_token_hint="garbage")
    assert query_of(browser.go(request.url).location)["error"] == "invalid_request"


def test_login_hint(browser, rp, account):
    """oidcc-login-hint: the login page is pre-filled."""
    request = rp.authorization_request(login_hint=account.phone)
    page = browser.go(request.url)
    assert f'value="{account.phone}"' in page.get_data(as_text=True)


@pytest.mark.parametrize("param", [{"ui_locales": "se"}, {"claims_locales": "se"}, {"display": "page"}])
def test_locales_and_display_accepted(browser, rp, account, param):
    """oidcc-ui-locales, oidcc-claims-locales, oidcc-display-page: accepted, the flow completes."""
    request, response = authorize(browser, rp, account, **param)
    assert "code" in query_of(response.location)


def test_acr_values(browser, rp, account):
    """oidcc-ensure-request-with-acr-values-succeeds: acr is in the ID token."""
    request, response = authorize(browser, rp, account, acr_values="1 2")
    claims = rp.validate_id_token(_tokens(rp, request, response)["id_token"], nonce=request.nonce)
    assert claims["acr"] == "urn:tessera:loa:1"


def test_code_reuse_revokes_tokens(browser, rp, account):
    """oidcc-codereuse and oidcc-codereuse-30seconds: the second use fails and revokes the
    tokens issued from the code (RFC 6749 4.1.2)."""
    request, response = authorize(browser, rp, account)
    code = code_from(response, request)
    first = rp.exchange(code, request)
    assert first.status_code == 200
    access_token = first.get_json()["access_token"]
    assert rp.userinfo(access_token).status_code == 200
    second = rp.exchange(code, request)
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    assert rp.userinfo(access_token).status_code == 401
    assert rp.refresh(first.get_json()["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_unregistered_redirect_uri_is_never_followed(browser, client):
    """oidcc-ensure-registered-redirect-uri: an error page, no redirect."""
    for uri in ("https://attacker.example/cb", client.redirect_uri + "/extra", client.redirect_uri + "?x=1"):
        response = browser.go(f"/authorize?client_id={client.client_id}&redirect_uri={uri}"
                              "&response_type=code&scope=openid&state=s")
        assert response.status_code == 400
        assert "cannot be processed" in response.get_data(as_text=True)


def test_missing_redirect_uri_and_unknown_client(browser, client):
    response = browser.go(f"/authorize?client_id={client.client_id}&response_type=code&scope=openid")
    assert response.status_code == 400
    response = browser.go("/authorize?client_id=nope&redirect_uri=https://rp.example.com/callback&response_type=code&scope=openid")
    assert response.status_code == 400


def test_post_authorization_request(http, browser, rp, account):
    """oidcc-ensure-post-request-succeeds: the authorization endpoint accepts POST."""
    authorize(browser, rp, account)  # log in and consent first
    request = rp.authorization_request()
    from urllib.parse import parse_qsl, urlsplit

    form = dict(parse_qsl(urlsplit(request.url).query))
    response = browser.http.post("/authorize", data=form)
    tokens = _tokens(rp, request, response)
    rp.validate_id_token(tokens["id_token"], nonce=request.nonce)


def test_client_secret_post(factories, http, browser, account):
    """oidcc-client-secret-post."""
    client = factories.client(auth_method="client_secret_post")
    rp = RelyingParty.for_client(http, ISSUER, client, auth_method="client_secret_post")
    request, response = authorize(browser, rp, account)
    _tokens(rp, request, response)
    # The registered method is the only one accepted (no downgrade to basic).
    request, response = authorize(browser, rp, account)
    basic = RelyingParty.for_client(http, ISSUER, client, auth_method="client_secret_basic")
    result = basic.exchange(code_from(response, request), request)
    assert result.status_code == 401 and result.get_json()["error"] == "invalid_client"


def test_wrong_client_secret(browser, rp, account):
    request, response = authorize(browser, rp, account)
    rp.client_secret = "wrong"
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 401 and result.get_json()["error"] == "invalid_client"


def test_claims_essential(browser, rp, account):
    """oidcc-claims-essential: a claim asked for with the claims parameter is returned."""
    claims = '{"userinfo": {"name": {"essential": true}}, "id_token": {"email": {"essential": true}}}'
    request, response = authorize(browser, rp, account, claims=claims)
    tokens = _tokens(rp, request, response)
    assert rp.userinfo(tokens["access_token"]).get_json()["name"] == "Grace Hopper"
    assert rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["email"] == "grace@example.com"


def test_claims_malformed(browser, rp):
    request = rp.authorization_request(claims="{not json")
    assert query_of(browser.go(request.url).location)["error"] == "invalid_request"


def test_refresh_token(browser, rp, account):
    """oidcc-refresh-token: new tokens, a new ID token with the same sub and auth_time."""
    request, response = authorize(browser, rp, account, scope="openid offline_access")
    tokens = _tokens(rp, request, response)
    first = rp.validate_id_token(tokens["id_token"], nonce=request.nonce)
    result = rp.refresh(tokens["refresh_token"])
    assert result.status_code == 200 and result.headers["Cache-Control"] == "no-store"
    refreshed = result.get_json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    claims = rp.validate_id_token(refreshed["id_token"], access_token=refreshed["access_token"])
    assert claims["sub"] == first["sub"] and claims["auth_time"] == first["auth_time"] and "nonce" not in claims
    assert rp.userinfo(refreshed["access_token"]).status_code == 200


def test_pkce_valid_and_invalid(factories, http, browser, account):
    """oidcc-ensure-pkce-code-verifier-required / valid PKCE (public client)."""
    client = factories.client(public=True, redirect_uri="com.example.app:/callback")
    rp = RelyingParty.for_client(http, ISSUER, client, auth_method="none")
    request, response = authorize(browser, rp, account)
    code = code_from(response, request)
    bad = rp.exchange(code, None, code_verifier="x" * 50)
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_grant"

    request, response = authorize(browser, rp, account)
    missing = rp.exchange(code_from(response, request), None)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"

    request, response = authorize(browser, rp, account)
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 200
    rp.validate_id_token(result.get_json()["id_token"], nonce=request.nonce)


def test_public_client_must_send_pkce_s256(factories, http, browser, account):
    client = factories.client(public=True, redirect_uri="com.example.app:/callback")
    rp = RelyingParty.for_client(http, ISSUER, client, auth_method="none")
    request = rp.authorization_request(pkce=False)
    params = query_of(browser.go(request.url).location)
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]
    plain = rp.authorization_request(pkce=False, code_challenge="a" * 43, code_challenge_method="plain")
    assert query_of(browser.go(plain.url).location)["error"] == "invalid_request"
    implicit_plain = rp.authorization_request(pkce=False, code_challenge="a" * 43)
    assert query_of(browser.go(implicit_plain.url).location)["error"] == "invalid_request"


def test_discovery(http):
    """Config OP: the discovery document and the JWKS."""
    doc = http.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == ISSUER
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                     "revocation_endpoint", "introspection_endpoint"):
        assert doc[endpoint].startswith(ISSUER + "/")
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["subject_types_supported"]) == {"pairwise", "public"}
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert "ES256" in doc["id_token_signing_alg_values_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "openid" in doc["scopes_supported"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert http.get("/.well-known/oauth-authorization-server").get_json()["issuer"] == ISSUER
    keys = http.get("/jwks").get_json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "ES256"}
    for key in keys:
        assert key["kid"] and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
