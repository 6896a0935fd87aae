"""Hypothesis over every HTML form of the hub: the interaction pages (login, phone login, one-time
code, sign-up, dormant account, consent, the second step, passkey logins), the logout confirmation,
the hub's own login, the forgot-password pages and the /account pages (profile, password, phone,
email, confirm, merge, unbind/revoke, passkeys). The body is raw bytes:
percent-escapes of bytes that are not UTF-8, lone surrogates, control characters, broken escapes,
repeated fields, odd content types — with a valid CSRF token (so the view itself runs), a wrong
one or none. No answer is a 5xx."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import encode, pairs, raw_fragments
from tests.rp import csrf_token

FUZZ = settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FIELDS = ["login", "password", "phone", "code", "name", "nickname", "picture", "locale", "email", "approve", "deny",
          "submit", "send", "next", "street_address", "locality", "region", "postal_code", "country", "survivor",
          "regrant_consents", "continue-submit", "client_id", "post_logout_redirect_uri", "state", "current",
          "confirm", "credential"]
FORM = "application/x-www-form-urlencoded"
# Mostly a form (the view runs), sometimes another or no content type.
CONTENT_TYPES = [FORM, FORM, FORM, FORM, f"{FORM}; charset=latin-1", "multipart/form-data; boundary=x", "text/plain", None]


def _body(token: str):
    valid = [("csrf_token", token)]
    csrf = st.sampled_from([valid, valid, valid, valid * 2, [], [("csrf_token", b"\xff")]])
    return st.builds(lambda c, fields, fragments: encode(c + fields, fragments),
                     csrf, pairs(FIELDS), st.lists(raw_fragments, max_size=3))


def _fuzz_forms(client, targets: list[str], token: str):
    @FUZZ
    @given(target=st.sampled_from(targets), body=_body(token), content_type=st.sampled_from(CONTENT_TYPES),
           query=st.none() | st.builds(encode, pairs(["next", "uid", "client_id", "interaction"])))
    def check(target, body, content_type, query):
        url = target + ("?" + query.decode("ascii") if query is not None else "")
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(url, data=body, headers=headers)
        assert response.status_code < 500, response.get_data(as_text=True)[:500]

    check()


def test_interaction_and_logout_forms_never_fail(http, relying_party):
    request = relying_party.authorization_request()
    start = http.get(request.url.replace("http://localhost", ""))
    uid = start.location.split("/interaction/")[1].split("/")[0]
    token = csrf_token(http.get(start.location).get_data(as_text=True))
    targets = [f"/interaction/{uid}/{step}" for step in
               ("login", "otp", "otp/code", "otp/signup", "otp/dormant", "otp/fresh", "consent", "mfa",
                "passkey", "passkey/options", "mfa/passkey/options")]
    targets += ["/interaction/unknown/login", "/logout/confirm", "/account/login", "/password/forgot",
                "/password/forgot/code", "/password/reset/not-a-token", "/account/login/passkey",
                "/account/login/passkey/options", "/account/login/mfa"]
    _fuzz_forms(http, targets, token)


def test_account_forms_never_fail(app, factories, browser):
    account = factories.account(email="fuzz@example.com")
    page = browser.go("http://localhost/account/login")
    home = browser.login(page, account.phone, account.password)
    assert home.status_code == 200 and "/account" in home.request.path, home.status_code
    token = csrf_token(home.get_data(as_text=True))
    targets = ["/account/profile", "/account/phone/bind", "/account/phone/rebind", "/account/phone/other",
               "/account/phone/bind/unknown-uid", "/account/email", "/account/confirm", "/account/merge/",
               "/account/merge/code", "/account/merge/preview", "/account/identities/999999/unbind",
               "/account/sessions/999999/revoke", "/account/clients/999999/revoke", "/account/password",
               "/account/security/passkeys/new", "/account/security/passkeys/options",
               "/account/security/passkeys/999999/rename", "/account/security/passkeys/999999/remove",
               "/account/security/totp"]
    _fuzz_forms(browser.http, targets, token)
    # still logged in: the forms above ran as the person, not as an anonymous visitor
    assert browser.http.get("/account/").status_code == 200


def test_the_query_of_an_interaction_page_is_harmless(http, relying_party):
    """GET of the interaction pages with a hostile query (the pages read ``next`` and hints)."""
    request = relying_party.authorization_request()
    start = http.get(request.url.replace("http://localhost", ""))
    uid = start.location.split("/interaction/")[1].split("/")[0]

    @FUZZ
    @given(step=st.sampled_from(["login", "otp", "otp/code", "otp/signup", "otp/dormant", "consent"]),
           query=st.builds(encode, pairs(["next", "login_hint", "phone", "error"]), st.lists(raw_fragments, max_size=2)))
    def check(step, query):
        response = http.get(f"/interaction/{uid}/{step}?" + query.decode("ascii"))
        assert response.status_code < 500, response.get_data(as_text=True)[:500]

    check()
