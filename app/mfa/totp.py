"""TOTP second factor (RFC 6238 with pyotp): enrolment (a secret, its otpauth:// URI and QR code,
confirmed by a first right code), verification, removal.

Rules:

- The secret is 160 random bits (RFC 4226 4), encrypted at rest (``app.crypto``); it is shown only
  while enrolment waits for its first code.
- A code is accepted for the current 30-second step and one step either side (clock drift), never
  for a step at or before the last one accepted: a code seen once (shoulder-surfed, phished and
  replayed) is refused, and so is any older one.
- Every check runs on the shared credential budget (``credential_check``): a guess spends it.
- Enrolling, confirming and removing are audited on the account (its security history).
"""

from __future__ import annotations

import hmac
import io
import time

import pyotp
import segno
from flask import current_app

from app import audit
from app.accounts.budget import credential_check
from app.crypto import decrypt_json, encrypt_json
from app.errors import AuthenticationFailed, Conflict, InvalidInput
from app.extensions import db
from app.mfa.models import RecoveryCode, TotpFactor
from app.security import utcnow

STEP_SECONDS = 30
DIGITS = 6


def _totp(factor: TotpFactor) -> pyotp.TOTP:
    return pyotp.TOTP(decrypt_json(factor.secret_encrypted), digits=DIGITS, interval=STEP_SECONDS)


def factor_of(account_id: int, *, confirmed: bool = True) -> TotpFactor | None:
    factor = db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id))
    if factor is None or (confirmed and factor.confirmed_at is None):
        return None
    return factor


def start_enrolment(account_id: int) -> TotpFactor:
    """A new unconfirmed secret for the account (replacing an unconfirmed one); Conflict when an
    authenticator is already enrolled (remove it first)."""
    factor = db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id))
    if factor is not None and factor.confirmed_at is not None:
        raise Conflict("an authenticator app is already set up: remove it first")
    if factor is None:
        factor = TotpFactor(account_id=account_id)
        db.session.add(factor)
    factor.secret_encrypted = encrypt_json(pyotp.random_base32(32))
    factor.last_step, factor.created_at = 0, utcnow()
    db.session.commit()
    return factor


def provisioning(factor: TotpFactor, account_label: str) -> tuple[str, str, str]:
    """The secret (for typing), the otpauth:// URI and an inline SVG QR code of it."""
    issuer = current_app.config["TESSERA_TOTP_ISSUER"]
    totp = _totp(factor)
    uri = totp.provisioning_uri(name=account_label or "account", issuer_name=issuer)
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, border=2, xmldecl=False, svgns=True,
                                   title="QR code for your authenticator app")
    return decrypt_json(factor.secret_encrypted), uri, buffer.getvalue().decode()


def _accept(factor: TotpFactor, code: str) -> bool:
    """Whether ``code`` is right for a step after the last one used; records the step."""
    code = (code or "").strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return False
    totp = _totp(factor)
    now_step = int(time.time()) // STEP_SECONDS
    matched = None
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code) and step > factor.last_step:
            matched = step
    if matched is None:
        return False
    factor.last_step, factor.last_used_at = matched, utcnow()
    return True


def confirm_enrolment(account_id: int, code: str) -> TotpFactor:
    """The first right code confirms the pending secret."""
    with credential_check("otp", account_id=account_id, logged_in=account_id):
        factor = db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id).with_for_update())
        if factor is None or factor.confirmed_at is not None:
            raise InvalidInput("start setting up an authenticator app first")
        if not _accept(factor, code):
            db.session.commit()
            raise AuthenticationFailed("that code is not right: check the time on your phone and try the next one")
        factor.confirmed_at = utcnow()
        audit.record("mfa.totp_enrolled", account_id=account_id, actor="self")
        db.session.commit()
    return factor


def verify(account_id: int, code: str) -> None:
    """A login's or a step-up's second factor: AuthenticationFailed unless ``code`` is a fresh right
    code of the account's confirmed authenticator."""
    with credential_check("otp", account_id=account_id):
        factor = db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id).with_for_update())
        if factor is None or factor.confirmed_at is None or not _accept(factor, code):
            db.session.commit()
            audit.record("mfa.failure", account_id=account_id, actor="self", method="otp")
            db.session.commit()
            raise AuthenticationFailed("that code is not right, or it was used already: wait for the next one")
        db.session.commit()


def remove_for_reset(account_id: int, actor: str) -> int:  # noqa: ARG001 (audited by the reset)
    """An operator's reset (``app.mfa.operators``): the authenticator and the recovery codes go, in
    the caller's transaction."""
    removed = db.session.execute(db.delete(TotpFactor).where(TotpFactor.account_id == account_id)).rowcount
    removed += db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.account_id == account_id)).rowcount
    return removed


def remove(account_id: int, actor: str = "self") -> bool:
    """Remove the account's authenticator (pending or confirmed); whether there was one."""
    factor = db.session.scalar(db.select(TotpFactor).filter_by(account_id=account_id))
    if factor is None:
        return False
    db.session.delete(factor)
    audit.record("mfa.totp_removed", account_id=account_id, actor=actor)
    db.session.commit()
    return True
