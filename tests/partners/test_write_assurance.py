"""A data contract's ``write_acr`` over HTTP: a partner's write of a person's shared claims needs a
token on the person's behalf whose authentication reaches the level; below it the answer is RFC
9470's ``insufficient_user_authentication`` challenge naming the level, and after the person steps
up at the hub (an authenticator app on the second step) the new token's write goes through."""

from __future__ import annotations

import re
import time

import pyotp

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from

LOA1, LOA2 = "urn:tessera:loa:1", "urn:tessera:loa:2"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
CHALLENGE = ('Bearer error="insufficient_user_authentication", error_description="{}", acr_values="{}"')


def _exchanged(backend: RelyingParty, access_token: str) -> str:
    """The partner backend trades the person's access token for a partner token (RFC 8693)."""
    response = backend.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token": access_token,
                                      "subject_token_type": ACCESS_TOKEN})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def _step_up_refused(response, acr: str) -> None:
    """RFC 9470 3: 401 with the challenge naming the acr, and an RFC 9457 problem saying the same."""
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["reason"] == "insufficient_user_authentication" and body["acr_values"] == acr
    assert response.headers["WWW-Authenticate"] == CHALLENGE.format(body["detail"], acr)


def _introspected(http, partner, token: str) -> dict:
    rp = RelyingParty(http, ISSUER, partner.client_id, partner.client_secret, None)
    return http.post("/introspect", data={"token": token}, headers=rp._auth({})[1]).get_json()


def test_a_partner_write_needs_the_level_and_a_step_up_reaches_it(app, http, factories, partners):
    partner = partners.make(read="nickname,addresses", write="nickname,addresses", token_exchange=True, write_acr=LOA2)
    person = factories.account(nickname="before")

    # The person signs in at the partner's site with a password only: loa:1.
    browser = Browser(app.test_client(), ISSUER)
    site = RelyingParty(browser.http, ISSUER, partner.client_id, partner.client_secret, partner.redirect_uri)
    request, response = authorize(browser, site, person, scope="openid partner")
    tokens = site.exchange(code_from(response, request), request).get_json()
    claims = site.validate_id_token(tokens["id_token"], nonce=request.nonce)
    sub = claims["sub"]
    assert claims["acr"] == LOA1

    # The partner's backend exchanges the person's token: the partner token carries loa:1.
    backend = RelyingParty(http, ISSUER, partner.client_id, partner.client_secret, None)
    weak = _exchanged(backend, tokens["access_token"])
    assert _introspected(http, partner, weak)["acr"] == LOA1
    headers = {"Authorization": f"Bearer {weak}"}
    read = http.get(f"/api/users/{sub}", headers=headers)
    assert read.status_code == 200  # reading needs no more than the contract and consent
    etag = read.headers["ETag"]
    _step_up_refused(http.patch(f"/api/users/{sub}", json={"nickname": "after"}, headers={**headers, "If-Match": etag}),
                     LOA2)
    _step_up_refused(http.post(f"/api/users/{sub}/addresses", json={"locality": "Hangzhou"}, headers=headers), LOA2)
    after_refusal = http.get(f"/api/users/{sub}", headers=headers).get_json()
    assert after_refusal["claims"] == {"nickname": "before", "addresses": []} and after_refusal["etag"] == etag

    # The site sends the person back to the hub asking for loa:2 (RFC 9470 4: the acr_values of
    # the challenge); the live session is stepped up: an authenticator app, set up right there.
    request = site.authorization_request(scope="openid partner", acr_values=LOA2)
    step = browser.go(request.url)
    html = step.get_data(as_text=True)
    assert step.request.path.endswith("/mfa") and 'name="password"' not in html, step.request.path
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', html).group(1)
    done = browser.submit(step, {"code": pyotp.TOTP(secret).at(int(time.time())), "verify": "Verify"})
    stepped = site.exchange(code_from(done, request), request).get_json()
    claims = site.validate_id_token(stepped["id_token"], nonce=request.nonce)
    assert claims["acr"] == LOA2 and claims["sub"] == sub

    strong = _exchanged(backend, stepped["access_token"])
    introspected = _introspected(http, partner, strong)
    assert introspected["acr"] == LOA2 and introspected["auth_time"] == claims["auth_time"]
    headers = {"Authorization": f"Bearer {strong}"}
    written = http.patch(f"/api/users/{sub}", json={"nickname": "after"}, headers={**headers, "If-Match": etag})
    assert written.status_code == 200, written.get_json()
    assert written.get_json()["claims"]["nickname"] == "after"
    added = http.post(f"/api/users/{sub}/addresses", json={"locality": "Hangzhou"}, headers=headers)
    assert added.status_code == 201, added.get_json()
    # the old, weaker token is still refused: each token carries the authentication it came from
    _step_up_refused(http.delete(f"/api/users/{sub}/addresses/{added.get_json()['id']}",
                                 headers={"Authorization": f"Bearer {weak}", "If-Match": added.headers["ETag"]}), LOA2)


def test_a_client_credentials_token_authenticates_no_person(app, http, factories, partners):
    partner = partners.make(read="nickname,addresses", write="nickname,addresses", write_acr=LOA1)
    person = factories.account(nickname="kept")
    sub = partners.share(partner, person.id)
    headers = partner.headers()
    read = http.get(f"/api/users/{sub}", headers=headers)
    assert read.status_code == 200
    assert "acr" not in _introspected(http, partner, partner.token())
    _step_up_refused(http.patch(f"/api/users/{sub}", json={"nickname": "x"},
                                headers={**headers, "If-Match": read.headers["ETag"]}), LOA1)
    _step_up_refused(http.post(f"/api/users/{sub}/addresses", json={"locality": "x"}, headers=headers), LOA1)
    # Before the person is even looked up: an unknown sub gets the same challenge (it says nothing of anyone).
    _step_up_refused(http.patch("/api/users/nobody", json={"nickname": "x"}, headers={**headers, "If-Match": '"x"'}),
                     LOA1)
    assert http.get(f"/api/users/{sub}", headers=headers).get_json()["claims"]["nickname"] == "kept"


def test_without_write_acr_any_token_writes_as_before(http, factories, partners):
    partner = partners.make(read="nickname", write="nickname")
    person = factories.account(nickname="old")
    sub = partners.share(partner, person.id)
    headers = partner.headers()
    etag = http.get(f"/api/users/{sub}", headers=headers).headers["ETag"]
    written = http.patch(f"/api/users/{sub}", json={"nickname": "new"}, headers={**headers, "If-Match": etag})
    assert written.status_code == 200 and written.get_json()["claims"] == {"nickname": "new"}


def test_write_acr_is_set_by_the_cli_and_only_to_a_supported_acr(app, factories):
    import json

    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:write")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["clients", "set-contract", "--client-id", client.client_id, "--write", "nickname",
                                 "--write-acr", LOA2, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["write_acr"] == LOA2
    plain = runner.invoke(args=["clients", "set-contract", "--client-id", client.client_id, "--write", "nickname"])
    assert plain.exit_code == 0 and "needs" not in plain.output  # replaced whole: no level any more
    bad = runner.invoke(args=["clients", "set-contract", "--client-id", client.client_id, "--write-acr", "gold"])
    assert bad.exit_code != 0 and "unsupported acr" in bad.output
