"""One-time codes sent to a phone: 6 random digits, stored as an HMAC (keyed from the secret key,
salted with the challenge's uid), valid ``TESSERA_OTP_TTL`` seconds, locked after
``TESSERA_OTP_MAX_ATTEMPTS`` wrong tries, single use. The challenge's ``uid`` is the public
handle the pages and APIs carry between "code sent" and "code entered".

Sending is rate limited per phone number (and per account when one is given) with
``TESSERA_OTP_PHONE_RATE_LIMIT``, counted from the challenges in the database (shared by every
worker and host); the pages add a per-address limit (flask-limiter, Redis when configured).
Verification is limited by the challenge's own lock. Every verification failure gives the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from limits import parse_many
from sqlalchemy import case, func, update

from app.accounts import audit
from app.accounts.identifiers import normalize_phone
from app.accounts.models import Identity, OtpChallenge
from app.accounts.sms import send_sms_code
from app.errors import AuthenticationFailed, InvalidInput, RateLimited
from app.extensions import db
from app.security import new_secret, utcnow

PURPOSES = frozenset({"login", "register", "bind", "rebind", "link", "merge", "reauth"})
CODE_DIGITS = 6
FAILURE = "invalid or expired code"


def _hmac_key() -> bytes:
    return hmac.new(current_app.config["SECRET_KEY"].encode("utf-8"), b"tessera-otp-code", hashlib.sha256).digest()


def hash_code(uid: str, code: str) -> str:
    return hmac.new(_hmac_key(), f"{uid}:{code}".encode("utf-8"), hashlib.sha256).hexdigest()


def _check_send_limits(phone: str, account_id: int | None) -> None:
    """RateLimited when ``TESSERA_OTP_PHONE_RATE_LIMIT`` codes already went to this phone (or,
    when the requester is known, for this account) within the limit's window. Counted from the
    challenges in the database: exact for every worker and host, no extra storage needed."""
    if not current_app.config["TESSERA_RATE_LIMITS_ENABLED"]:
        return
    now = utcnow()
    for limit in parse_many(current_app.config["TESSERA_OTP_PHONE_RATE_LIMIT"]):
        since = now - timedelta(seconds=limit.get_expiry())
        scopes = [OtpChallenge.phone == phone] + ([OtpChallenge.account_id == account_id] if account_id else [])
        for scope in scopes:
            sent = db.session.scalar(
                db.select(func.count()).select_from(OtpChallenge).where(scope, OtpChallenge.created_at > since)
            )
            if sent >= limit.amount:
                raise RateLimited("too many codes were sent to this number, try again later")


def send_code(phone: str, purpose: str, account_id: int | None = None) -> OtpChallenge:
    """Create a challenge for ``phone``, send its code, commit; returns the challenge (``.uid``
    is its public handle). InvalidInput for a bad number or purpose, RateLimited over the
    per-phone limit, ``app.accounts.sms.SmsDeliveryFailed`` when the sender fails (nothing kept)."""
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown code purpose {purpose!r}")
    phone = normalize_phone(phone)
    _check_send_limits(phone, account_id)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    uid = new_secret(24)
    now = utcnow()
    challenge = OtpChallenge(
        uid=uid, purpose=purpose, phone=phone, code_hash=hash_code(uid, code), account_id=account_id,
        max_attempts=current_app.config["TESSERA_OTP_MAX_ATTEMPTS"],
        ip_address=request.remote_addr if has_request_context() else None,
        created_at=now, expires_at=now + timedelta(seconds=current_app.config["TESSERA_OTP_TTL"]),
    )
    db.session.add(challenge)
    try:
        send_sms_code(phone, code, purpose)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return challenge


def verify_code(uid: str, code: str, purpose: str) -> OtpChallenge:
    """The challenge, consumed, if ``code`` is its code. AuthenticationFailed (one message for
    every case) when the challenge is unknown, expired, consumed, locked, for another purpose,
    or the code is wrong; a wrong code counts an attempt and the last allowed one locks it."""
    challenge = db.session.scalar(db.select(OtpChallenge).filter_by(uid=uid or ""))
    now = utcnow()
    if challenge is None:
        hash_code(uid or "", code or "")  # the same work as a real check
        raise AuthenticationFailed(FAILURE)
    live = (
        challenge.consumed_at is None and challenge.locked_at is None
        and challenge.expires_at > now and challenge.purpose == purpose
    )
    right = hmac.compare_digest(hash_code(challenge.uid, (code or "").strip()), challenge.code_hash)
    usable = OtpChallenge.consumed_at.is_(None) & OtpChallenge.locked_at.is_(None)
    if live and right:
        # Conditional UPDATE: of two concurrent requests with the right code, only one wins.
        consumed = db.session.execute(
            update(OtpChallenge).where(OtpChallenge.id == challenge.id, usable).values(consumed_at=now)
        ).rowcount
        db.session.commit()
        db.session.refresh(challenge)
        if consumed == 1:
            return challenge
        raise AuthenticationFailed(FAILURE)
    if challenge.consumed_at is None and challenge.locked_at is None:
        # Counted atomically in the database, so parallel guesses cannot exceed the limit.
        counted = db.session.execute(
            update(OtpChallenge).where(OtpChallenge.id == challenge.id, usable).values(
                attempts=OtpChallenge.attempts + 1,
                locked_at=case((OtpChallenge.attempts + 1 >= OtpChallenge.max_attempts, now), else_=None),
            )
        ).rowcount
        db.session.commit()
        db.session.refresh(challenge)
        if counted == 1 and challenge.locked_at is not None:
            owner = challenge.account_id or db.session.scalar(db.select(Identity.account_id).filter_by(
                kind="phone", namespace="", value=challenge.phone, released_at=None))
            audit.record("otp.locked", account_id=owner, actor="system",
                         purpose=challenge.purpose, attempts=challenge.attempts)
            db.session.commit()
    raise AuthenticationFailed(FAILURE)
