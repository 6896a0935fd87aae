"""Signing keys: creation, rotation (next → current → retired), retirement of one key, the JWKS,
and a per-process cache.

Rotation never breaks a token already issued: the ``next`` key is published in the JWKS before it
signs anything, and a ``retired`` key stays published for ``TESSERA_KEY_RETIRED_TTL``. Every
process drops its cached keys within ``TESSERA_CACHE_CHECK_INTERVAL`` of a rotation anywhere
(``app/caches.py``; ``TESSERA_KEY_CACHE_TTL`` is the backstop); if it signs with the old current
key in that moment, that key is still in the JWKS as ``retired``.

``retire_key`` takes one key out sooner (``published_until``): a ``next`` key at once (it never
signed anything; a new ``next`` takes its place), a ``retired`` one once no token signed with it
can still be valid (``retirement_end``), or at once when asked (a leaked key). The ``current`` key
is never retired: rotate first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from flask import current_app
from joserfc import jwk, jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from app import audit
from app.caches import caches, watch
from app.crypto import decrypt_json, encrypt_json
from app.errors import Conflict, NotFound
from app.events.models import OutboxEvent
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


def rotate_keys(*, actor: str = "operator:cli") -> list[SigningKey]:
    """For each algorithm: current → retired, next → current, and a fresh next key. Audited as
    ``keys.rotated`` with ``actor``."""
    ensure_keys()
    now = utcnow()
    current, upcoming = [], []
    for alg in SUPPORTED_ALGS:
        for row in db.session.scalars(db.select(SigningKey).filter_by(alg=alg, state="current").with_for_update()):
            row.state, row.retired_at = "retired", now
        for row in db.session.scalars(db.select(SigningKey).filter_by(alg=alg, state="next").with_for_update()):
            row.state, row.activated_at = "current", now
            current.append(row.kid)
        upcoming.append(_new_key(alg, "next").kid)
    audit.record("keys.rotated", actor=actor, current=current, next=upcoming)
    db.session.commit()
    return list_keys()


def list_keys() -> list[SigningKey]:
    return list(db.session.scalars(db.select(SigningKey).order_by(SigningKey.id)))


def published_until(row: SigningKey) -> datetime | None:
    """When the key leaves the JWKS: None while it is ``current`` or ``next``; for a retired key,
    ``TESSERA_KEY_RETIRED_TTL`` after its retirement, or its ``published_until`` if sooner."""
    if row.state != "retired":
        return None
    ends = [row.retired_at + timedelta(seconds=current_app.config["TESSERA_KEY_RETIRED_TTL"])]
    if row.published_until is not None:
        ends.append(row.published_until)
    return min(ends)


def key_to_dict(row: SigningKey) -> dict:
    until = published_until(row)
    return {"kid": row.kid, "alg": row.alg, "state": row.state, "created_at": row.created_at,
            "activated_at": row.activated_at, "retired_at": row.retired_at, "published_until": until,
            "published": until is None or until > utcnow()}


def _signed_by(event: OutboxEvent, kid: str) -> bool:
    """Whether the JWT an outbox message carries (a Security Event Token as the body, a logout
    token as the ``logout_token`` form field) names ``kid`` in its header."""
    token = event.body
    if event.content_type == "application/x-www-form-urlencoded":
        token = (parse_qs(event.body).get("logout_token") or [""])[0]
    try:
        return extract_compact(token.encode()).headers().get("kid") == kid
    except (JoseError, ValueError):
        return False


def retirement_end(row: SigningKey) -> datetime:
    """When no token signed by a retired key can still be valid: the last moment a process may
    have signed with it (its retirement plus ``TESSERA_KEY_CACHE_TTL``, the longest any process
    keeps the keys it cached) plus an ID token's lifetime (``TESSERA_ID_TOKEN_TTL``), or the
    expiry of a queued message signed with it if later. A queued message that never expires (a
    Security Event Token, retried until acknowledged) keeps it valid: ``Conflict``."""
    config = current_app.config
    last_signed = row.retired_at + timedelta(seconds=config["TESSERA_KEY_CACHE_TTL"])
    end = last_signed + timedelta(seconds=config["TESSERA_ID_TOKEN_TTL"])
    queued = db.session.scalars(db.select(OutboxEvent).where(
        OutboxEvent.status == "pending", OutboxEvent.created_at >= (row.activated_at or row.created_at),
        OutboxEvent.created_at <= last_signed))
    forever = 0
    for event in queued:
        if not _signed_by(event, row.kid):
            continue
        if event.expires_at is None:
            forever += 1
        else:
            end = max(end, event.expires_at)
    if forever:
        raise Conflict(f"{forever} queued message(s) signed with key {row.kid} wait for delivery and never expire "
                       "(tessera deliveries list): their receivers check them against the JWKS; retire it once "
                       "they are delivered, or now anyway")
    return end


def retire_key(kid: str, *, actor: str, now: bool = False) -> SigningKey:
    """Take a key out of the JWKS sooner than rotation does. A ``next`` key is retired at once
    (it never signed anything) and a new ``next`` key of its algorithm created; a ``retired`` key
    leaves the JWKS at ``retirement_end``, or at once with ``now`` (tokens signed with it then fail
    verification). The ``current`` key is refused: rotate first. A key out of the JWKS already
    is refused too. Every process sees the change within ``TESSERA_CACHE_CHECK_INTERVAL`` (the
    row is watched: ``app.caches``). Audited as ``key.retired``."""
    row = db.session.scalar(db.select(SigningKey).filter_by(kid=kid or ""))
    if row is None:
        raise NotFound(f"no signing key {kid!r}")
    # Every key of its algorithm, locked (rotate_keys locks them too): a rotation waits or wins.
    rows = {r.kid: r for r in db.session.scalars(
        db.select(SigningKey).filter_by(alg=row.alg).with_for_update().execution_options(populate_existing=True))}
    row, moment = rows[kid], utcnow()
    if row.state == "current":
        db.session.rollback()
        raise Conflict(f"key {kid} is the current {row.alg} signing key: rotate first (tessera keys rotate), "
                       "then retire it")
    before, ends = row.state, published_until(row)
    if ends is not None and ends <= moment:
        db.session.rollback()
        raise Conflict(f"key {kid} left the JWKS at {ends:%Y-%m-%d %H:%M:%S} UTC already")
    if row.state == "next":
        row.state, row.retired_at, row.published_until = "retired", moment, moment
        _new_key(row.alg, "next")
    else:
        try:
            row.published_until = moment if now else max(moment, retirement_end(row))
        except Conflict:
            db.session.rollback()
            raise
    audit.record("key.retired", actor=actor, kid=kid, alg=row.alg, state=before, now=now,
                 published_until=published_until(row).isoformat())
    db.session.commit()
    return row


@dataclass(frozen=True)
class _Keys:
    signing: dict  # alg -> (kid, joserfc key)
    jwks: dict


def _load() -> _Keys:
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["TESSERA_KEY_RETIRED_TTL"])
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
        if row.state in ("current", "next") or (row.retired_at and row.retired_at > cutoff
                                                 and (row.published_until is None or row.published_until > now)):
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
