"""Signing keys: creation, rotation (next → current → retired), the JWKS, and a per-process cache.

Rotation never breaks a token already issued: the ``next`` key is published in the JWKS before it
signs anything, and a ``retired`` key stays published for ``TESSERA_KEY_RETIRED_TTL``. Every
process drops its cached keys within ``TESSERA_CACHE_CHECK_INTERVAL`` of a rotation anywhere
(``app/caches.py``; ``TESSERA_KEY_CACHE_TTL`` is the backstop); if it signs with the old current
key in that moment, that key is still in the JWKS as ``retired``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from joserfc import jwk, jwt

from app.caches import caches, watch
from app.crypto import decrypt_json, encrypt_json
from app.extensions import db
from app.oidc.models import SigningKey
from app.security import new_secret, utcnow

SUPPORTED_ALGS = ("RS256", "ES256")
DEFAULT_ALG = "RS256"
KEYS_CACHE = "keys"

# Any change to a signing key (creation, rotation) drops the cached keys in every process.
watch(SigningKey, KEYS_CACHE)


def _generate(alg: str):
    if alg == "RS256":
        return jwk.generate_key("RSA", 2048, private=True)
    if alg == "ES256":
        return jwk.generate_key("EC", "P-256", private=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


def _new_key(alg: str, state: str) -> SigningKey:
    key = _generate(alg)
    kid = key.thumbprint()
    public = dict(key.as_dict(private=False), kid=kid, alg=alg, use="sig")
    private = dict(key.as_dict(private=True), kid=kid, alg=alg, use="sig")
    row = SigningKey(kid=kid, alg=alg, state=state, public_jwk=public, private_jwk_encrypted=encrypt_json(private))
    if state == "current":
        row.activated_at = utcnow()
    db.session.add(row)
    return row


def ensure_keys() -> list[SigningKey]:
    """Make sure each supported algorithm has a current and a next key. Idempotent."""
    created = []
    for alg in SUPPORTED_ALGS:
        states = set(db.session.scalars(db.select(SigningKey.state).filter_by(alg=alg)))
        for state in ("current", "next"):
            if state not in states:
                created.append(_new_key(alg, state))
    db.session.commit()
    return created


def rotate_keys() -> list[SigningKey]:
    """For each algorithm: current → retired, next → current, and a fresh next key."""
    ensure_keys()
    now = utcnow()
    for alg in SUPPORTED_ALGS:
        for row in db.session.scalars(db.select(SigningKey).filter_by(alg=alg, state="current").with_for_update()):
            row.state, row.retired_at = "retired", now
        for row in db.session.scalars(db.select(SigningKey).filter_by(alg=alg, state="next").with_for_update()):
            row.state, row.activated_at = "current", now
        _new_key(alg, "next")
    db.session.commit()
    return list_keys()


def list_keys() -> list[SigningKey]:
    return list(db.session.scalars(db.select(SigningKey).order_by(SigningKey.id)))


@dataclass(frozen=True)
class _Keys:
    signing: dict  # alg -> (kid, joserfc key)
    jwks: dict


def _load() -> _Keys:
    cutoff = utcnow() - timedelta(seconds=current_app.config["TESSERA_KEY_RETIRED_TTL"])
    # populate_existing: a long-lived session (a worker) may hold rows as they were before a rotation.
    query = db.select(SigningKey).order_by(SigningKey.id).execution_options(populate_existing=True)
    rows = list(db.session.scalars(query))
    if not any(r.state == "current" for r in rows):
        ensure_keys()
        rows = list(db.session.scalars(query))
    signing, published = {}, []
    for row in rows:
        if row.state == "current":
            signing[row.alg] = (row.kid, jwk.import_key(decrypt_json(row.private_jwk_encrypted)))
        if row.state in ("current", "next") or (row.retired_at and row.retired_at > cutoff):
            published.append(dict(row.public_jwk))
    return _Keys(signing=signing, jwks={"keys": published})


def _cache() -> _Keys:
    """The signing keys and the JWKS, from this process's cache."""
    return caches().lookup(KEYS_CACHE, KEYS_CACHE, _load, current_app.config["TESSERA_KEY_CACHE_TTL"])


def signing_key(alg: str = DEFAULT_ALG):
    """(kid, private key) of the current key for ``alg``."""
    if alg not in SUPPORTED_ALGS:
        alg = DEFAULT_ALG
    return _cache().signing[alg]


def sign_for_client(client, claims: dict, typ: str = "JWT") -> str:
    """A JWT for ``client`` (ID token, logout token, Security Event Token), signed with the current
    key of the client's ``id_token_signed_response_alg``."""
    alg = client.id_token_signed_response_alg
    kid, key = signing_key(alg)
    return jwt.encode({"alg": alg, "kid": kid, "typ": typ}, claims, key, algorithms=[alg])


def public_jwks() -> dict:
    return _cache().jwks


def security_event_token(client, txn: str, events: dict) -> tuple[str, str]:
    """An RFC 8417 Security Event Token for ``client`` (issuer, audience, a fresh ``jti``, ``txn``
    and the ``events`` object), signed for it; returns (jwt, jti)."""
    jti = new_secret(24)
    claims = {"iss": current_app.config["TESSERA_ISSUER"], "iat": int(time.time()), "jti": jti,
              "aud": client.client_id, "txn": txn, "events": events}
    return sign_for_client(client, claims, typ="secevent+jwt"), jti
