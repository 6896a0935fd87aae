"""Hypothesis over the protocol endpoints' parameters: /authorize, /token (every grant type, with
and without Basic credentials of arbitrary bytes), /revoke, /introspect, /userinfo (any
Authorization header), /logout. Whatever arrives — bytes that are not UTF-8, lone surrogates,
control characters, huge or repeated parameters, broken percent-encoding — the answer is below
500, and /authorize never redirects anywhere but to the client's registered redirect URI.

The app runs with TESTING, so an exception reaches the test (and Hypothesis shrinks it) instead
of becoming a 500. Reproducing a failure: README "Reproducing a Hypothesis failure"."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ISSUER
from tests.fuzz.strategies import basic_header, encode, pairs, query, raw_fragments, value_bytes
from tests.rp import authorize

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

AUTHORIZE_PARAMS = ["client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "prompt", "max_age",
                    "login_hint", "id_token_hint", "acr_values", "claims", "code_challenge", "code_challenge_method",
                    "response_mode", "ui_locales", "display", "request", "request_uri", "registration"]
TOKEN_GRANTS = ["authorization_code", "refresh_token", "client_credentials", "password",
                "urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
TOKEN_PARAMS = ["grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id",
                "client_secret", "client_assertion", "client_assertion_type", "subject_token", "subject_token_type",
                "requested_token_type", "actor_token", "audience", "resource", "username", "password"]
TOKEN_ENDPOINT_PARAMS = ["token", "token_type_hint", "client_id", "client_secret", "client_assertion",
                         "client_assertion_type"]
LOGOUT_PARAMS = ["id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales"]


def _below_500(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    return response


def _authorize_base(rp) -> dict:
    return {"client_id": rp.client_id, "redirect_uri": rp.redirect_uri, "response_type": "code", "scope": "openid",
            "state": "s", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}


def test_authorize_never_fails_and_never_redirects_elsewhere(http, relying_party):
    base = _authorize_base(relying_party)

    @FUZZ
    @given(raw=query(base, AUTHORIZE_PARAMS), post=st.booleans())
    def check(raw, post):
        if post:
            response = http.post("/authorize", data=raw, headers=FORM)
        else:
            response = http.get("/authorize?" + raw.decode("ascii"))
        _below_500(response)
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.location
            assert location.startswith("/") or location.startswith(ISSUER + "/") \
                or location.startswith(relying_party.redirect_uri + "?"), location

    check()


def test_token_endpoint_never_fails(http, relying_party):
    valid = (relying_party.client_id, relying_party.client_secret)
    grant = st.one_of(st.sampled_from(TOKEN_GRANTS), value_bytes)

    @FUZZ
    @given(grant=grant, extra=pairs(TOKEN_PARAMS), fragments=st.lists(raw_fragments, max_size=3),
           authorization=st.none() | basic_header(valid))
    def check(grant, extra, fragments, authorization):
        headers = dict(FORM, **({"Authorization": authorization} if authorization is not None else {}))
        _below_500(http.post("/token", data=encode([("grant_type", grant), *extra], fragments), headers=headers))

    check()


def test_revocation_and_introspection_never_fail(http, relying_party):
    valid = (relying_party.client_id, relying_party.client_secret)
    token = relying_party.token_request({"grant_type": "client_credentials", "scope": "openid"}).get_json()
    tokens = st.sampled_from([token.get("access_token", "x"), "unknown"]) | value_bytes

    @FUZZ
    @given(endpoint=st.sampled_from(["/revoke", "/introspect"]), token=tokens, extra=pairs(TOKEN_ENDPOINT_PARAMS),
           fragments=st.lists(raw_fragments, max_size=3), authorization=st.none() | basic_header(valid))
    def check(endpoint, token, extra, fragments, authorization):
        headers = dict(FORM, **({"Authorization": authorization} if authorization is not None else {}))
        _below_500(http.post(endpoint, data=encode([("token", token), *extra], fragments), headers=headers))

    check()


def test_userinfo_never_fails(http, relying_party):
    token = relying_party.token_request({"grant_type": "client_credentials", "scope": "openid"}).get_json()
    header = st.one_of(
        st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
        st.binary(max_size=60).map(lambda b: "Bearer " + b.decode("latin-1")),
        st.just(f"Bearer {token.get('access_token', 'x')}"),
    ).filter(lambda h: "\r" not in h and "\n" not in h)

    @FUZZ
    @given(authorization=st.none() | header, method=st.sampled_from(["get", "post"]), body=pairs(["access_token"]),
           fragments=st.lists(raw_fragments, max_size=2))
    def check(authorization, method, body, fragments):
        headers = {"Authorization": authorization} if authorization is not None else {}
        if method == "post":
            response = http.post("/userinfo", data=encode(body, fragments), headers=dict(FORM, **headers))
        else:
            response = http.get("/userinfo", headers=headers)
        _below_500(response)

    check()


def test_logout_never_fails(http, relying_party, factories, browser):
    account = factories.account()
    authorize(browser, relying_party, account)  # a live session in the browser's client, sometimes used below
    base = {"client_id": relying_party.client_id, "post_logout_redirect_uri": "https://rp.example.com/bye", "state": "s"}

    @FUZZ
    @given(raw=query(base, LOGOUT_PARAMS), post=st.booleans(), logged_in=st.booleans())
    def check(raw, post, logged_in):
        client = browser.http if logged_in else http
        if post:
            response = client.post("/logout", data=raw, headers=FORM)
        else:
            response = client.get("/logout?" + raw.decode("ascii"))
        _below_500(response)
        if response.status_code in (301, 302, 303, 307, 308):
            assert response.location.startswith("/") or response.location.startswith(ISSUER + "/"), response.location

    check()
