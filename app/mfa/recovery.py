"""Recovery codes: ten single-use codes a person keeps for when their second factor is lost. Shown
once when generated (a new set replaces the old one), stored as keyed hashes, each accepted once,
checked on the shared credential budget. A recovery code counts as a one-time password (``otp``)."""

from __future__ import annotations

import secrets

from sqlalchemy import func

from app import audit
from app.accounts.budget import credential_check
from app.errors import AuthenticationFailed
from app.extensions import db
from app.mfa.models import RecoveryCode
from app.security import client_secret_hash, utcnow

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from paper


def _normalized(code: str) -> str:
    return "".join(c for c in (code or "").lower() if c.isalnum())


def generate(account_id: int, actor: str = "self") -> list[str]:
    """A new set of codes (``xxxxx-xxxxx``, 50 bits each), replacing any earlier set."""
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
    codes = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(account_id=account_id, code_hash=client_secret_hash(raw)))
    audit.record("mfa.recovery_codes_generated", account_id=account_id, actor=actor, count=COUNT)
    db.session.commit()
    return codes


def remaining(account_id: int) -> int:
    return db.session.scalar(db.select(func.count(RecoveryCode.id)).filter_by(account_id=account_id, used_at=None))


def use(account_id: int, code: str) -> None:
    """Spend one code; AuthenticationFailed when it is not an unused code of the account."""
    with credential_check("otp", account_id=account_id):
        digest = client_secret_hash(_normalized(code))
        row = db.session.scalar(db.select(RecoveryCode).filter_by(account_id=account_id, code_hash=digest, used_at=None)
                                .with_for_update())
        if row is None:
            audit.record("mfa.failure", account_id=account_id, actor="self", method="recovery_code")
            db.session.commit()
            raise AuthenticationFailed("that recovery code is not right, or it was used already")
        row.used_at = utcnow()
        audit.record("mfa.recovery_code_used", account_id=account_id, actor="self", remaining=remaining(account_id) - 1)
        db.session.commit()


def discard(account_id: int, actor: str) -> int:
    removed = db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.account_id == account_id)).rowcount
    return removed
