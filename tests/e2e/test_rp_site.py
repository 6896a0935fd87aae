"""The demo relying party's own checks, without a browser or a hub: its back-channel logout
endpoint (Back-Channel Logout 1.0 section 2.6 validation, jti de-duplication), its front-channel
endpoint and its third-party-initiated login endpoint. The hub's discovery document and JWKS are
served from memory; logout tokens are signed with a key of this test."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from examples.rp_site import BACKCHANNEL_EVENT, LocalSession, SiteConfig, create_app

ISSUER = "http://hub.test"
CLIENT_ID = "site-x"


@pytest.fixture(scope="module")
def key():
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


@pytest.fixture
def site(key):
    config = SiteConfig(name="Site X", issuer=ISSUER, client_id=CLIENT_ID, client_secret="s",
                        base_url="http://127.0.0.1:5999", secret_key="unit-test-secret-key-0123456789")
    app = create_app(config)
    hub = app.extensions["authlib.integrations.flask_client"].hub
    hub.server_metadata.update({
        "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize", "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks", "end_session_endpoint": f"{ISSUER}/logout",
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "jwks": KeySet([key]).as_dict(private=False), "_loaded_at": time.time(),
    })
    return app


def add_session(app, sid="sid-1", sub="sub-1") -> LocalSession:
    local = LocalSession(key=uuid.uuid4().hex, sub=sub, sid=sid, id_token="x", claims={"sub": sub},
                         session_state=None, via="login")
    app.extensions["rp_store"].put(local)
    return local


def logout_token(key, header=None, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex,
              "sub": "sub-1", "sid": "sid-1", "events": {BACKCHANNEL_EVENT: {}}}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(header or {"alg": "RS256", "kid": "k1", "typ": "logout+jwt"}, claims, key)


def post(app, token):
    return app.test_client().post("/backchannel-logout", data={"logout_token": token})


def sids(app):
    return [s["sid"] for s in app.test_client().get("/debug/sessions").get_json()["sessions"]]


def test_valid_logout_token_clears_the_sessions_of_its_sid(site, key):
    add_session(site, "sid-1")
    add_session(site, "sid-1")
    add_session(site, "sid-2")
    response = post(site, logout_token(key))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert sids(site) == ["sid-2"]


def test_sub_only_logout_token_clears_every_session_of_the_subject(site, key):
    add_session(site, "sid-1", "sub-1")
    add_session(site, "sid-2", "sub-1")
    add_session(site, "sid-3", "sub-2")
    assert post(site, logout_token(key, sid=None)).status_code == 200
    assert sids(site) == ["sid-3"]


def test_replayed_jti_is_acknowledged_but_not_acted_on_twice(site, key):
    token = logout_token(key)
    assert post(site, token).status_code == 200
    add_session(site, "sid-1")  # a new login with the same sid must survive the replay
    assert post(site, token).status_code == 200
    assert sids(site) == ["sid-1"]
    events = site.test_client().get("/debug/sessions").get_json()["logouts"]
    assert [e.get("duplicate", False) for e in events] == [False, True]


@pytest.mark.parametrize("overrides", [
    {"iss": "http://evil.test"},
    {"aud": "another-client"},
    {"exp": int(time.time()) - 3600},
    {"iat": None},
    {"jti": None},
    {"events": None},
    {"events": {"http://schemas.openid.net/event/other": {}}},
    {"events": {BACKCHANNEL_EVENT: "not an object"}},
    {"nonce": "n-0S6_WzA2Mj"},
    {"sid": None, "sub": None},
], ids=lambda o: ",".join(f"{k}={'absent' if v is None else 'bad'}" for k, v in o.items()))
def test_invalid_logout_tokens_are_refused(site, key, overrides):
    add_session(site)
    response = post(site, logout_token(key, **overrides))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert sids(site) == ["sid-1"]


def test_logout_token_signed_by_another_key_or_alg_none_or_id_token_typ_is_refused(site, key):
    add_session(site)
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert post(site, logout_token(other)).status_code == 400
    unsigned = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vaHViLnRlc3QifQ."  # {"alg":"none"}
    assert post(site, unsigned).status_code == 400
    assert post(site, logout_token(key, header={"alg": "RS256", "kid": "k1", "typ": "JWT"})).status_code == 400
    assert post(site, "").status_code == 400
    assert sids(site) == ["sid-1"]


def test_aud_may_be_a_list(site, key):
    add_session(site)
    assert post(site, logout_token(key, aud=[CLIENT_ID, "other"])).status_code == 200
    assert sids(site) == []


def test_frontchannel_logout_checks_iss_and_clears_by_sid(site):
    add_session(site, "sid-1")
    add_session(site, "sid-2")
    http = site.test_client()
    assert http.get("/frontchannel-logout?iss=http://evil.test&sid=sid-1").status_code == 400
    response = http.get(f"/frontchannel-logout?iss={ISSUER}&sid=sid-1")
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    assert sids(site) == ["sid-2"]


def test_initiate_login_checks_iss_and_starts_an_authorization(site):
    http = site.test_client()
    assert http.get("/initiate-login?iss=http://evil.test").status_code == 400
    assert http.get("/initiate-login").status_code == 400

    # a target at the hub (the login chain): silent, and back to the hub afterwards
    response = http.get(f"/initiate-login?iss={ISSUER}&target_link_uri={ISSUER}/chain/abc")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.location).query)
    assert response.location.startswith(f"{ISSUER}/authorize?")
    assert query["prompt"] == ["none"] and query["code_challenge_method"] == ["S256"]
    assert query["nonce"] and query["state"] and query["redirect_uri"] == ["http://127.0.0.1:5999/callback"]

    # a target on the site itself: an ordinary login, with the hint
    response = http.get(f"/initiate-login?iss={ISSUER}&login_hint=%2B14155550123"
                        "&target_link_uri=http://127.0.0.1:5999/welcome")
    query = parse_qs(urlsplit(response.location).query)
    assert "prompt" not in query and query["login_hint"] == ["+14155550123"]


def test_callback_with_an_unknown_state_is_refused(site):
    response = site.test_client().get("/callback?code=abc&state=forged")
    assert response.status_code == 400
    assert b"invalid_state" in response.data
