"""Token endpoint grants and token management: refresh rotation with reuse detection, client
credentials, private_key_jwt, revocation (RFC 7009), introspection (RFC 7662), storage as hashes."""

import os
import threading
import time
import uuid

import pytest
from joserfc import jwk, jwt
from sqlalchemy import text

from app.extensions import db
from app.caches import caches
from app.security import client_secret_hash, token_hash
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from


@pytest.fixture
def account(factories):
    return factories.account()


@pytest.fixture
def client(factories):
    return factories.client()


@pytest.fixture
def rp(http, client):
    return RelyingParty.for_client(http, ISSUER, client)


def _tokens(rp, browser, account, **params):
    request, response = authorize(browser, rp, account, **params)
    result = rp.exchange(code_from(response, request), request)
    assert result.status_code == 200, result.get_json()
    return result.get_json()


def test_refresh_rotation_and_reuse_detection(browser, rp, account):
    first = _tokens(rp, browser, account)
    second = rp.refresh(first["refresh_token"]).get_json()
    third = rp.refresh(second["refresh_token"]).get_json()
    assert rp.userinfo(third["access_token"]).status_code == 200

    # The rotated refresh token is presented again: the whole family is revoked.
    reuse = rp.refresh(first["refresh_token"])
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    assert rp.userinfo(third["access_token"]).status_code == 401
    assert rp.refresh(third["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_refresh_scope_narrowing(browser, rp, account):
    tokens = _tokens(rp, browser, account, scope="openid profile email")
    narrowed = rp.refresh(tokens["refresh_token"], scope="openid email")
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == "openid email"
    tokens = _tokens(rp, browser, account, scope="openid")
    widened = rp.refresh(tokens["refresh_token"], scope="openid phone")
    assert widened.get_json()["error"] == "invalid_scope"
    # A refused refresh does not spend the token (its claim is rolled back with the request).
    assert rp.refresh(tokens["refresh_token"]).status_code == 200


@pytest.mark.skipif(not (os.environ.get("TESSERA_TEST_DATABASE_URL") or "").startswith("postgresql"),
                    reason="concurrent transactions are tested on PostgreSQL (the PostgreSQL run of make test)")
def test_two_refreshes_racing_with_one_token_rotate_it_once(app, client, browser, rp, account):
    """The refresh token is claimed by an UPDATE … RETURNING: of requests racing with the same
    token, exactly one gets new tokens, and the losers count as reuse (the family is revoked)."""
    tokens = _tokens(rp, browser, account)
    start, answers = threading.Barrier(4), []

    def refresh():
        racer = RelyingParty.for_client(app.test_client(), ISSUER, client)
        start.wait()
        answers.append(racer.refresh(tokens["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = [a.get_json() for a in answers if a.status_code == 200]
    assert len(ok) == 1, [a.get_json() for a in answers]
    assert all(a.get_json()["error"] == "invalid_grant" for a in answers if a.status_code != 200)
    with app.app_context():
        used = db.session.execute(text("SELECT count(*) FROM tokens WHERE refresh_used_at IS NOT NULL")).scalar()
    assert used == 1


def test_refresh_by_another_client_fails(factories, http, browser, rp, account):
    tokens = _tokens(rp, browser, account)
    other = RelyingParty.for_client(http, ISSUER, factories.client())
    assert other.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    # ... and did not burn the token for its owner.
    assert rp.refresh(tokens["refresh_token"]).status_code == 200


def test_tokens_are_stored_as_hashes(app, browser, rp, account):
    tokens = _tokens(rp, browser, account)
    with app.app_context():
        row = db.session.execute(text("SELECT access_token_hash, refresh_token_hash FROM tokens")).one()
        assert row.access_token_hash == token_hash(tokens["access_token"])
        assert row.refresh_token_hash == token_hash(tokens["refresh_token"])
        dump = " ".join(str(v) for r in db.session.execute(text("SELECT * FROM tokens")) for v in r)
        assert tokens["access_token"] not in dump and tokens["refresh_token"] not in dump
        secrets = db.session.execute(text("SELECT secret_hash FROM clients")).scalars().all()
        assert rp.client_secret not in secrets and token_hash(rp.client_secret) not in secrets  # keyed, not SHA-256
        assert client_secret_hash(rp.client_secret) in secrets


def _legacy_client(app, factories):
    """A client whose secret is stored the way it was before revision 0012: unsalted SHA-256."""
    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:read")
    with app.app_context():
        db.session.execute(text("UPDATE clients SET secret_hash = :h WHERE client_id = :c"),
                           {"h": token_hash(client.client_secret), "c": client.client_id})
        db.session.commit()
        caches().drop("clients")  # a raw UPDATE bumps no cache version
    return client


def _stored_secret_hash(app, client_id):
    with app.app_context():
        return db.session.execute(text("SELECT secret_hash FROM clients WHERE client_id = :c"), {"c": client_id}).scalar()


def test_legacy_secret_hash_still_authenticates_and_is_rewritten_keyed(app, factories, http):
    client = _legacy_client(app, factories)
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    for _ in range(2):  # the second time from the client cache, which still holds the old form
        assert rp.token_request({"grant_type": "client_credentials", "scope": "partner:read"}).status_code == 200
        stored = _stored_secret_hash(app, client.client_id)
        assert stored.startswith("hmac$") and stored != token_hash(client.client_secret)
    with app.app_context():
        assert stored == client_secret_hash(client.client_secret)
        caches().drop("clients")  # a raw UPDATE bumps no cache version
    assert rp.token_request({"grant_type": "client_credentials", "scope": "partner:read"}).status_code == 200


def test_legacy_secret_hash_with_a_wrong_secret_is_refused_and_kept(app, factories, http):
    client = _legacy_client(app, factories)
    wrong = RelyingParty(http, ISSUER, client.client_id, client.client_secret + "x", None)
    response = wrong.token_request({"grant_type": "client_credentials", "scope": "partner:read"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert _stored_secret_hash(app, client.client_id) == token_hash(client.client_secret)


def test_client_credentials(factories, http):
    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:read")
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    result = rp.token_request({"grant_type": "client_credentials", "scope": "partner:read"})
    assert result.status_code == 200 and result.headers["Cache-Control"] == "no-store"
    body = result.get_json()
    assert body["token_type"].lower() == "bearer" and "refresh_token" not in body and "id_token" not in body
    introspected = rp.token_request({"token": body["access_token"]})  # wrong endpoint on purpose
    assert introspected.status_code == 400
    unauthorized = RelyingParty.for_client(http, ISSUER, factories.client())
    denied = unauthorized.token_request({"grant_type": "client_credentials"})
    assert denied.status_code == 400 and denied.get_json()["error"] == "unauthorized_client"


def test_unsupported_grant_type_and_missing_code(rp):
    assert rp.token_request({"grant_type": "password", "username": "x", "password": "y"}).get_json()["error"] == "unsupported_grant_type"
    assert rp.token_request({"grant_type": "authorization_code"}).get_json()["error"] == "invalid_request"
    assert rp.exchange("not-a-code").get_json()["error"] == "invalid_grant"


def test_code_bound_to_redirect_uri_and_client(factories, http, browser, rp, account):
    request, response = authorize(browser, rp, account)
    code = code_from(response, request)
    other = RelyingParty.for_client(http, ISSUER, factories.client())
    assert other.exchange(code).get_json()["error"] == "invalid_grant"
    request, response = authorize(browser, rp, account)
    result = rp.token_request({"grant_type": "authorization_code", "code": code_from(response, request),
                               "redirect_uri": "https://rp.example.com/other"})
    assert result.get_json()["error"] == "invalid_grant"


def test_expired_code(app, browser, rp, account):
    request, response = authorize(browser, rp, account)
    code = code_from(response, request)
    with app.app_context():
        db.session.execute(text("UPDATE authorization_codes SET expires_at = '2000-01-01 00:00:00'"))
        db.session.commit()
    assert rp.exchange(code, request).get_json()["error"] == "invalid_grant"


def test_revocation_of_access_token(browser, rp, account):
    tokens = _tokens(rp, browser, account)
    result = rp.http.post("/revoke", data={"token": tokens["access_token"]}, headers=rp._auth({})[1])
    assert result.status_code == 200
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    # RFC 7009 2.1 lets the server revoke the refresh token issued with it as well: this hub does.
    assert rp.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_revocation_of_refresh_token_revokes_the_grant(browser, rp, account):
    tokens = _tokens(rp, browser, account)
    result = rp.http.post("/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
                          headers=rp._auth({})[1])
    assert result.status_code == 200
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert rp.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_revocation_of_unknown_or_foreign_token(factories, http, browser, rp, account):
    assert http.post("/revoke", data={"token": "unknown"}, headers=rp._auth({})[1]).status_code == 200
    tokens = _tokens(rp, browser, account)
    other = RelyingParty.for_client(http, ISSUER, factories.client())
    http.post("/revoke", data={"token": tokens["access_token"]}, headers=other._auth({})[1])
    assert rp.userinfo(tokens["access_token"]).status_code == 200  # not the other client's to revoke
    assert http.post("/revoke", data={"token": "x"}).status_code == 401


def test_access_tokens_carry_the_authentication_they_came_from(factories, http, browser, rp, account):
    """A code's and a refresh's access tokens keep the session's auth_time and acr (introspection
    returns them: RFC 9470 6.2); a client-credentials token authenticated no person."""
    def introspect(token: str, caller: RelyingParty = rp) -> dict:
        return http.post("/introspect", data={"token": token}, headers=caller._auth({})[1]).get_json()

    tokens = _tokens(rp, browser, account)
    claims = rp.validate_id_token(tokens["id_token"])
    first = introspect(tokens["access_token"])
    assert first["acr"] == claims["acr"] == "urn:tessera:loa:1" and first["auth_time"] == claims["auth_time"]
    refreshed = introspect(rp.refresh(tokens["refresh_token"]).get_json()["access_token"])
    assert (refreshed["acr"], refreshed["auth_time"]) == (first["acr"], first["auth_time"])

    backend = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="api")
    backend_rp = RelyingParty(http, ISSUER, backend.client_id, backend.client_secret, None)
    own = introspect(backend_rp.token_request({"grant_type": "client_credentials"}).get_json()["access_token"], backend_rp)
    assert own["active"] is True and {"acr", "auth_time", "sub"}.isdisjoint(own)


def test_introspection(factories, http, browser, rp, account):
    tokens = _tokens(rp, browser, account)
    claims = rp.validate_id_token(tokens["id_token"])
    result = http.post("/introspect", data={"token": tokens["access_token"]}, headers=rp._auth({})[1])
    body = result.get_json()
    assert body["active"] is True and body["sub"] == claims["sub"] and body["client_id"] == rp.client_id
    assert body["iss"] == ISSUER and body["exp"] > time.time()
    refresh = http.post("/introspect", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
                        headers=rp._auth({})[1]).get_json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"

    # Another client may not introspect it (inactive), a resource server with "introspection" may.
    stranger = RelyingParty.for_client(http, ISSUER, factories.client())
    assert http.post("/introspect", data={"token": tokens["access_token"]}, headers=stranger._auth({})[1]).get_json() == {"active": False}
    rs = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="introspection")
    rs_rp = RelyingParty(http, ISSUER, rs.client_id, rs.client_secret, None)
    assert http.post("/introspect", data={"token": tokens["access_token"]}, headers=rs_rp._auth({})[1]).get_json()["active"] is True

    http.post("/revoke", data={"token": tokens["access_token"]}, headers=rp._auth({})[1])
    assert http.post("/introspect", data={"token": tokens["access_token"]}, headers=rp._auth({})[1]).get_json() == {"active": False}
    assert http.post("/introspect", data={"token": "nope"}, headers=rp._auth({})[1]).get_json() == {"active": False}
    assert http.post("/introspect", data={"token": "nope"}).status_code == 401


def _private_key_client(factories, alg="RS256"):
    key = jwk.generate_key("RSA", 2048, private=True) if alg == "RS256" else jwk.generate_key("EC", "P-256", private=True)
    public = dict(key.as_dict(private=False), kid="k1", alg=alg, use="sig")
    client = factories.client(auth_method="private_key_jwt", jwks={"keys": [public]})
    return client, key


def _assertion(client_id, key, alg="RS256", aud=f"{ISSUER}/token", jti=None, exp_in=60):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + exp_in,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key, algorithms=[alg])


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_private_key_jwt(factories, http, browser, account, alg):
    client, key = _private_key_client(factories, alg)
    rp = RelyingParty.for_client(http, ISSUER, client, auth_method="private_key_jwt")
    request, response = authorize(browser, rp, account)
    jti = uuid.uuid4().hex
    form = {"grant_type": "authorization_code", "code": code_from(response, request), "redirect_uri": client.redirect_uri,
            "code_verifier": request.code_verifier,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(client.client_id, key, alg, jti=jti)}
    result = http.post("/token", data=form)
    assert result.status_code == 200, result.get_json()
    rp.validate_id_token(result.get_json()["id_token"], nonce=request.nonce)

    # The same assertion (jti) cannot be replayed.
    request, response = authorize(browser, rp, account)
    form.update(code=code_from(response, request), code_verifier=request.code_verifier)
    assert http.post("/token", data=form).get_json()["error"] == "invalid_client"


def test_private_key_jwt_rejects_bad_assertions(factories, http, browser, account):
    client, key = _private_key_client(factories)
    other_key = jwk.generate_key("RSA", 2048, private=True)
    rp = RelyingParty.for_client(http, ISSUER, client, auth_method="private_key_jwt")
    for assertion in (
        _assertion(client.client_id, other_key),  # signed with a key the client did not register
        _assertion(client.client_id, key, aud="https://elsewhere.example/token"),
        _assertion(client.client_id, key, exp_in=-300),
    ):
        request, response = authorize(browser, rp, account)
        result = http.post("/token", data={
            "grant_type": "authorization_code", "code": code_from(response, request),
            "redirect_uri": client.redirect_uri, "code_verifier": request.code_verifier,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        assert result.status_code in (400, 401) and result.get_json()["error"] == "invalid_client"


def test_logging_in_does_not_change_the_updated_at_claim(app, http, client, account):
    """OIDC Core 5.1 updated_at is when the person's information changed; a login records
    last_login_at without touching it."""
    def updated_at_after_a_fresh_login():
        browser = Browser(app.test_client(), ISSUER)
        rp = RelyingParty.for_client(http, ISSUER, client)
        tokens = _tokens(rp, browser, account, scope="openid profile")
        return rp.userinfo(tokens["access_token"]).get_json()["updated_at"]

    first = updated_at_after_a_fresh_login()
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET updated_at = updated_at - interval '1 day'")
                           if db.engine.dialect.name == "postgresql"
                           else text("UPDATE accounts SET updated_at = datetime(updated_at, '-1 day')"))
        db.session.commit()
    second = updated_at_after_a_fresh_login()
    assert second == first - 86400
    with app.app_context():
        assert db.session.execute(text("SELECT last_login_at FROM accounts WHERE id = :id"), {"id": account.id}).scalar()
