"""One-time codes sent to a phone: 6 random digits, stored as an HMAC (keyed from the secret key,
salted with the challenge's uid), valid ``TESSERA_OTP_TTL`` seconds, locked after
``TESSERA_OTP_MAX_ATTEMPTS`` wrong tries, single use. The challenge's ``uid`` is the public
handle the pages and APIs carry between "code sent" and "code entered".

Sending draws on the shared SMS send budget (per client address, number, country calling code,
requesting account and globally: ``app.accounts.budget``), whichever route asks. Verification is
limited by the challenge's own lock and draws on the shared credential-check budget. Every
verification failure gives the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import case, update

from app import audit
from app.accounts.budget import credential_check, reserve_sms_send
from app.accounts.identifiers import normalize_phone
from app.accounts.models import Identity, OtpChallenge
from app.accounts.sms import send_sms_code
from app.errors import AuthenticationFailed, InvalidInput
from app.extensions import db
from app.security import new_secret, utcnow

PURPOSES = frozenset({"login", "register", "bind", "rebind", "link", "merge", "reauth", "reset", "mfa"})
CODE_DIGITS = 6
FAILURE = "invalid or expired code"


def _hmac_key() -> bytes:
    return hmac.new(current_app.config["SECRET_KEY"].encode("utf-8"), b"tessera-otp-code", hashlib.sha256).digest()


def hash_code(uid: str, code: str) -> str:
    return hmac.new(_hmac_key(), f"{uid}:{code}".encode("utf-8"), hashlib.sha256).hexdigest()


def send_code(phone: str, purpose: str, account_id: int | None = None, *, deliver: bool = True) -> OtpChallenge:
    """Create a challenge for ``phone``, send its code, commit; returns the challenge (``.uid``
    is its public handle). InvalidInput for a bad number or purpose, BudgetSpent (429) when the
    SMS send budget is spent, ``app.accounts.sms.SmsDeliveryFailed`` when the sender fails (nothing
    kept, nothing spent). ``deliver=False`` makes a decoy: the same budget unit, the same row,
    nothing sent — for a page that must not tell whether a number is an account's way in
    (a password reset, app.accounts.recovery), whose code nobody can then know."""
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown code purpose {purpose!r}")
    phone = normalize_phone(phone)
    reservation = reserve_sms_send(phone, account_id)
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
        if deliver:
            send_sms_code(phone, code, purpose)
    except Exception:
        db.session.rollback()
        reservation.refund()  # nothing was sent
        raise
    db.session.commit()
    return challenge


def _phone_holder(phone: str) -> int | None:
    return db.session.scalar(db.select(Identity.account_id).filter_by(kind="phone", namespace="", value=phone,
                                                                     released_at=None))


def verify_code(uid: str, code: str, purpose: str) -> OtpChallenge:
    """The challenge, consumed, if ``code`` is its code. AuthenticationFailed (one message for
    every case) when the challenge is unknown, expired, consumed, locked, for another purpose,
    or the code is wrong; a wrong code counts an attempt and the last allowed one locks it.
    Every verification draws on the credential budget (the phone and its account are the target,
    the requesting account the logged-in person); BudgetSpent when it is spent."""
    challenge = db.session.scalar(db.select(OtpChallenge).filter_by(uid=uid or ""))
    if challenge is None:
        with credential_check("otp"):
            hash_code(uid or "", code or "")  # the same work as a real check
            raise AuthenticationFailed(FAILURE)
    with credential_check("otp", identifier=challenge.phone, account_id=_phone_holder(challenge.phone),
                          logged_in=challenge.account_id):
        return _check_code(challenge, code, purpose)


def _check_code(challenge: OtpChallenge, code: str, purpose: str) -> OtpChallenge:
    now = utcnow()
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
            owner = challenge.account_id or _phone_holder(challenge.phone)
            audit.record("otp.locked", account_id=owner, actor="system",
                         purpose=challenge.purpose, attempts=challenge.attempts)
            db.session.commit()
    raise AuthenticationFailed(FAILURE)
