"""oidcc-server: the basic authorization code flow, end to end."""

from tests.conftest import ISSUER
from tests.rp import RelyingParty, query_of


def test_code_flow_with_consent(factories, http, browser):
    account = factories.account(email="ada@example.com", name="Ada")
    client = factories.client()
    rp = RelyingParty.for_client(http, ISSUER, client)

    request = rp.authorization_request(scope="openid profile email")
    page = browser.go(request.url)
    assert page.status_code == 200 and "Log in" in page.get_data(as_text=True)
    page = browser.login(page, account.phone, account.password)
    assert "Allow access" in page.get_data(as_text=True)
    response = browser.approve(page)
    assert response.status_code == 302 and response.location.startswith(client.redirect_uri)
    params = query_of(response.location)
    assert params["state"] == request.state
    assert params["iss"] == ISSUER

    token_response = rp.exchange(params["code"], request)
    assert token_response.status_code == 200, token_response.get_json()
    assert token_response.headers["Cache-Control"] == "no-store"
    tokens = token_response.get_json()
    claims = rp.validate_id_token(tokens["id_token"], nonce=request.nonce, access_token=tokens["access_token"])
    for claim in ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash"):
        assert claim in claims, claim

    info = rp.userinfo(tokens["access_token"]).get_json()
    assert info["sub"] == claims["sub"]
    assert info["email"] == "ada@example.com" and info["name"] == "Ada"
