"""Pairwise subjects (OIDC Core 8), native-app redirects (RFC 8252) and signing key rotation."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from app.errors import InvalidInput
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def _sub(http, browser, client, account, **kwargs):
    rp = RelyingParty.for_client(http, ISSUER, client, **kwargs)
    request, response = authorize(browser, rp, account)
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"], tokens, rp


def test_pairwise_subjects_per_sector(factories, http, browser):
    account = factories.account()
    a1 = factories.client(redirect_uri="https://shop.example.com/cb")
    a2 = factories.client(redirect_uri="https://shop.example.com/other-cb")
    b = factories.client(redirect_uri="https://games.example.net/cb")
    sub_a1, _, _ = _sub(http, browser, a1, account)
    sub_a2, _, _ = _sub(http, browser, a2, account)
    sub_b, _, _ = _sub(http, browser, b, account)
    assert sub_a1 == sub_a2  # same sector, same subject
    assert sub_a1 != sub_b
    assert str(account.id) not in (sub_a1, sub_b)


def test_public_subject_type(factories, http, browser):
    account = factories.account()
    p1 = factories.client(redirect_uri="https://one.example.com/cb", subject_type="public")
    p2 = factories.client(redirect_uri="https://two.example.org/cb", subject_type="public")
    assert _sub(http, browser, p1, account)[0] == _sub(http, browser, p2, account)[0]


def test_other_users_get_other_subjects(factories, http, app):
    from tests.rp import Browser

    client = factories.client()
    subs = {_sub(http, Browser(app.test_client(), ISSUER), client, factories.account())[0] for _ in range(3)}
    assert len(subs) == 3


@pytest.fixture
def sector_document():
    """A sector_identifier_uri served on a real socket."""
    body = {"doc": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            payload = json.dumps(body["doc"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield body, f"http://127.0.0.1:{server.server_port}/sector.json"
    server.shutdown()


def test_sector_identifier_uri(factories, http, browser, sector_document):
    body, url = sector_document
    uris = ["https://a.example.com/cb", "https://b.example.org/cb"]
    body["doc"] = uris
    client = factories.client(redirect_uris=uris, sector_identifier_uri=url)
    assert client.sector == "127.0.0.1"
    account = factories.account()
    first = _sub(http, browser, client, account)[0]
    second_client = factories.client(redirect_uris=["https://b.example.org/cb"], sector_identifier_uri=url)
    assert _sub(http, browser, second_client, account)[0] == first

    body["doc"] = ["https://a.example.com/cb"]  # does not list every redirect URI
    with pytest.raises(InvalidInput, match="does not list"):
        factories.client(redirect_uris=uris, sector_identifier_uri=url)


def test_multiple_hosts_need_sector_identifier_uri(factories):
    with pytest.raises(InvalidInput, match="sector_identifier_uri"):
        factories.client(redirect_uris=["https://a.example.com/cb", "https://b.example.org/cb"])


def test_sector_identifier_uri_refuses_private_addresses(app, factories):
    app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = False
    try:
        with pytest.raises(InvalidInput):
            factories.client(redirect_uris=["https://a.example.com/cb"], sector_identifier_uri="https://127.0.0.1/s.json")
    finally:
        app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = True


def test_native_loopback_redirect_any_port(factories, http, browser):
    """RFC 8252 7.3: a registered loopback IP redirect matches any port; the path must match."""
    account = factories.account()
    client = factories.client(public=True, redirect_uris=["http://127.0.0.1/callback"])
    rp = RelyingParty(http, ISSUER, client.client_id, None, "http://127.0.0.1:51234/callback", auth_method="none")
    request, response = authorize(browser, rp, account)
    assert response.location.startswith("http://127.0.0.1:51234/callback?")
    assert rp.exchange(code_from(response, request), request).status_code == 200

    wrong_path = RelyingParty(http, ISSUER, client.client_id, None, "http://127.0.0.1:51234/other", auth_method="none")
    assert browser.go(wrong_path.authorization_request().url).status_code == 400


def test_native_clients_do_not_share_a_sector(factories, http, browser):
    account = factories.account()
    app1 = factories.client(public=True, redirect_uris=["http://127.0.0.1/callback", "com.example.one:/cb"])
    app2 = factories.client(public=True, redirect_uris=["http://127.0.0.1/callback"])
    assert app1.sector != app2.sector
    s1 = _sub(http, browser, app1, account, auth_method="none")[0]
    s2 = _sub(http, browser, app2, account, auth_method="none")[0]
    assert s1 != s2


@pytest.mark.parametrize("uri,public", [
    ("http://rp.example.com/cb", False),     # http off loopback
    ("com.example.app:/cb", False),          # private-use scheme for a confidential client
    ("myapp:/cb", True),                     # not a reverse domain name
    ("https://rp.example.com/cb#frag", False),
    ("javascript:alert(1)", True),
    ("/relative", False),
])
def test_redirect_uri_registration_rules(factories, uri, public):
    with pytest.raises(InvalidInput):
        factories.client(redirect_uris=[uri], public=public)


def test_key_rotation_keeps_issued_tokens_verifiable(app, factories, http, browser):
    account = factories.account()
    client = factories.client()
    _, before, rp = _sub(http, browser, client, account)
    old_kid = __import__("joserfc").jws.extract_compact(before["id_token"].encode()).protected["kid"]
    next_kids = {k["kid"] for k in http.get("/jwks").get_json()["keys"]}

    with app.app_context():
        from app.oidc.keys import rotate_keys

        rotate_keys()
    published = {k["kid"] for k in http.get("/jwks").get_json()["keys"]}
    assert old_kid in published  # retired, still published
    rp.validate_id_token(before["id_token"])  # a token from before the rotation still verifies

    _, after, _ = _sub(http, browser, client, account)
    new_kid = __import__("joserfc").jws.extract_compact(after["id_token"].encode()).protected["kid"]
    assert new_kid != old_kid and new_kid in next_kids  # the former "next" key signs now
    rp.validate_id_token(after["id_token"])
