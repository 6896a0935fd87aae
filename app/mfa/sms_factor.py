"""SMS as a second factor: for a person who logs in with a password, a code sent by SMS to the
account's verified phone as the second step (``sms`` in ``amr``).

Rules:

- Turned on by the person on /account/security (after a recent login), only while the account has a
  password and a verified phone; it counts as a second factor only while both hold.
- Never the second step of a login whose first factor was already an SMS code: the same phone twice
  is one factor.
- Codes go through ``app.accounts.otp`` (purpose ``mfa``): the SMS send budget, expiry, attempts, the
  credential budget on every check. A code is good only for the account it was sent for.
"""

from __future__ import annotations

from app import audit
from app.accounts import otp
from app.accounts.models import Account
from app.errors import AuthenticationFailed, Conflict
from app.extensions import db
from app.mfa.models import SmsSecondFactor


def verified_phone(account: Account) -> str | None:
    identity = account.identity("phone")
    return identity.value if identity is not None and identity.verified else None


def chosen(account_id: int) -> bool:
    return db.session.get(SmsSecondFactor, account_id) is not None


def usable(account_id: int) -> bool:
    """Turned on, and the account still has a password and a verified phone."""
    if not chosen(account_id):
        return False
    account = db.session.get(Account, account_id)
    return account is not None and bool(account.password_hash) and verified_phone(account) is not None


def turn_on(account: Account) -> None:
    if not account.password_hash:
        raise Conflict("set a password first: a code by SMS is the second step after a password")
    if verified_phone(account) is None:
        raise Conflict("add and verify a phone number first")
    if not chosen(account.id):
        db.session.add(SmsSecondFactor(account_id=account.id))
        audit.record("mfa.sms_enabled", account_id=account.id, actor="self")
    db.session.commit()


def turn_off(account_id: int, actor: str = "self") -> None:
    row = db.session.get(SmsSecondFactor, account_id)
    if row is not None:
        db.session.delete(row)
        audit.record("mfa.sms_disabled", account_id=account_id, actor=actor)
    db.session.commit()


def remove_for_reset(account_id: int, actor: str) -> int:  # noqa: ARG001 (audited by the reset)
    return db.session.execute(db.delete(SmsSecondFactor).where(SmsSecondFactor.account_id == account_id)).rowcount


def send(account: Account) -> str:
    """Send a code to the account's verified phone; the challenge's handle (kept by the page)."""
    phone = verified_phone(account)
    if phone is None or not usable(account.id):
        raise Conflict("codes by SMS are not set up for this account")
    return otp.send_code(phone, "mfa", account_id=account.id).uid


def verify(account_id: int, challenge_uid: str, code: str) -> None:
    """AuthenticationFailed unless ``code`` is the code of the challenge sent for this account."""
    challenge = otp.verify_code(challenge_uid, code, "mfa")
    if challenge.account_id != account_id:
        raise AuthenticationFailed(otp.FAILURE)
