"""Log in or sign up with a phone number and a one-time code (the anchor flow).

1. ``request_code``: a code goes to the number whether or not it is registered (a ``login`` code
   for a registered number, a ``register`` code otherwise); the caller answers the same page
   either way, so nobody learns who is registered without holding the phone.
2. ``verify``: the code is checked; what happens next depends on the number:

   =========================================  ================================================
   the number is …                            outcome
   =========================================  ================================================
   not registered                             ``signup``: a new account with this verified phone
   registered to an active account            ``login``
   registered to a *dormant* active account   ``dormant``: the code alone does not log in (the
   (no login for TESSERA_DORMANT_DAYS)        carrier may have recycled the number); the user
                                              proves the account (its password) or starts fresh
   registered to a closed or locked account   ``unavailable``
   =========================================  ================================================

3. After ``signup`` and ``dormant`` the verified code is the proof of the phone for one more step
   (``sign_up``, ``prove_dormant``, ``start_fresh``), while it is younger than the interaction.

Start fresh on a recycled number: the phone identity is released from the dormant account
(audit ``identity.released``, reason ``recycled_number``) and a new account gets it. The dormant
account keeps its data and its other identities; if the phone was its only way to log in, it is
locked (audit ``account.locked``) so that an operator can restore access to its owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from app import audit
from app.accounts.claims import announcing_identity_claims
from app.accounts.budget import credential_check
from app.accounts.identifiers import normalize_phone
from app.accounts.locking import lock_account
from app.accounts.models import Account, Identity, OtpChallenge
from app.accounts.otp import send_code, verify_code
from app.accounts.login import mark_login, password_matches
from app.accounts.profile import create_account
from app.errors import AuthenticationFailed, Conflict
from app.extensions import db
from app.security import utcnow

LOGIN_PURPOSES = ("login", "register")
START_OVER = "this code can no longer be used here, start again with a new code"


@dataclass
class PhoneLogin:
    #: "login" | "signup" | "dormant" | "unavailable"
    outcome: str
    phone: str
    account: Account | None = None


def _phone_identity(phone: str) -> Identity | None:
    return db.session.scalar(db.select(Identity).filter_by(kind="phone", namespace="", value=phone, released_at=None))


def is_dormant(account: Account) -> bool:
    """No login for TESSERA_DORMANT_DAYS (never logged in: counted from its creation)."""
    last = account.last_login_at or account.created_at
    return last <= utcnow() - timedelta(days=current_app.config["TESSERA_DORMANT_DAYS"])


def request_code(phone: str) -> OtpChallenge:
    """Send a login or register code to ``phone``. Same work and same answer in both cases."""
    # The same queries either way (no account_id: its extra per-account count would differ).
    registered = _phone_identity(normalize_phone(phone)) is not None
    return send_code(phone, "login" if registered else "register")


def _classify(phone: str) -> PhoneLogin:
    identity = _phone_identity(phone)
    if identity is None:
        return PhoneLogin("signup", phone)
    account = db.session.get(Account, identity.account_id)
    if not account.is_active:
        return PhoneLogin("unavailable", phone, account)
    if is_dormant(account):
        return PhoneLogin("dormant", phone, account)
    return PhoneLogin("login", phone, account)


def _login(account: Account, phone: str, client_id: int | None, method: str = "otp", **details) -> None:
    mark_login(account, _phone_identity(phone), client_id)
    audit.record("login.success", account_id=account.id, actor="self", client_id=client_id, method=method,
                 identity="phone", **details)


def verify(challenge_uid: str, code: str, client_id: int | None = None) -> PhoneLogin:
    """Check the code of a login/register challenge and say what comes next; logs in (audit,
    last login) when the outcome is ``login``. AuthenticationFailed for any wrong code."""
    challenge = db.session.scalar(db.select(OtpChallenge).filter_by(uid=challenge_uid or ""))
    purpose = challenge.purpose if challenge is not None and challenge.purpose in LOGIN_PURPOSES else "login"
    try:
        challenge = verify_code(challenge_uid, code, purpose)
    except AuthenticationFailed:
        identity = _phone_identity(challenge.phone) if challenge is not None else None
        audit.record("login.failure", account_id=identity.account_id if identity else None, client_id=client_id,
                     method="otp", reason="bad code")
        db.session.commit()
        raise
    result = _classify(challenge.phone)
    if result.outcome == "login":
        _login(result.account, challenge.phone, client_id)
        db.session.commit()
    elif result.outcome == "unavailable":
        audit.record("login.failure", account_id=result.account.id, client_id=client_id, method="otp",
                     reason="inactive account")
        db.session.commit()
    return result


def verified_phone(challenge_uid: str) -> str:
    """The phone a consumed login/register code proved, while the proof is fresh (no older than
    an interaction). AuthenticationFailed otherwise."""
    challenge = db.session.scalar(db.select(OtpChallenge).filter_by(uid=challenge_uid or ""))
    oldest = utcnow() - timedelta(seconds=current_app.config["TESSERA_INTERACTION_TTL"])
    if (challenge is None or challenge.purpose not in LOGIN_PURPOSES or challenge.consumed_at is None
            or challenge.consumed_at < oldest):
        raise AuthenticationFailed(START_OVER)
    return challenge.phone


def _expect(challenge_uid: str, outcome: str) -> PhoneLogin:
    result = _classify(verified_phone(challenge_uid))
    if result.outcome != outcome:
        raise AuthenticationFailed(START_OVER)  # the number changed hands meanwhile
    return result


def _create(phone: str, name: str | None, password: str | None, client_id: int | None, **details) -> Account:
    account = create_account(phone=phone, password=password or None, name=name or None, verified=True)
    audit.record("account.created", account_id=account.id, actor="self", client_id=client_id, method="otp",
                 identity="phone", **details)
    _login(account, phone, client_id)
    db.session.commit()
    return account


def sign_up(challenge_uid: str, name: str | None = None, password: str | None = None,
            client_id: int | None = None) -> Account:
    """Create the account of a verified, unregistered phone and log it in."""
    result = _expect(challenge_uid, "signup")
    return _create(result.phone, name, password, client_id)


def prove_dormant(challenge_uid: str, password: str, client_id: int | None = None) -> Account:
    """Log in to the dormant account of a verified phone with that account's password too."""
    result = _expect(challenge_uid, "dormant")
    account = result.account
    with credential_check("otp+pwd", identifier=result.phone, account_id=account.id):
        if not password_matches(account, password):
            audit.record("login.failure", account_id=account.id, client_id=client_id, method="otp+pwd",
                         reason="bad credentials (dormant account)")
            db.session.commit()
            raise AuthenticationFailed("wrong password for the account of this number")
        _login(account, result.phone, client_id, method="otp+pwd")
        db.session.commit()
    return account


def start_fresh(challenge_uid: str, name: str | None = None, password: str | None = None,
                client_id: int | None = None) -> Account:
    """Recycled number: release the phone from the dormant account and create a new account
    with it, in one transaction. The dormant account keeps its data and other identities."""
    result = _expect(challenge_uid, "dormant")
    dormant = lock_account(result.account.id)  # row lock, then the merge lock (app.accounts.locking)
    if dormant is None or not dormant.is_active:
        raise AuthenticationFailed(START_OVER)
    identity = _phone_identity(result.phone)
    with announcing_identity_claims(dormant.id, source="recycled_number"):  # its clients see the phone go
        identity.released_at = utcnow()
    audit.record("identity.released", account_id=dormant.id, actor="system", client_id=client_id,
                 identity="phone", value=result.phone, reason="recycled_number")
    if not any(i.id != identity.id and i.released_at is None for i in dormant.identities):
        # Its only way to log in is gone: locked, kept for an operator to restore to its owner.
        dormant.status = "locked"
        audit.record("account.locked", account_id=dormant.id, actor="system", client_id=client_id,
                     reason="recycled_number: no identity left")
    try:
        db.session.flush()
        return _create(result.phone, name, password, client_id, replaced_dormant_account=True)
    except Conflict:
        raise AuthenticationFailed(START_OVER) from None
    except Exception:
        db.session.rollback()  # nothing released unless the new account exists
        raise
