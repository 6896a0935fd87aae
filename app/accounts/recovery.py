"""Forgot password: the person sets a new password with a proof of their verified phone or email,
from the hub's login pages (docs/flows/recovery.md).

1. ``request_reset(identifier)``: a phone number or an email address.

   - A phone: a code (purpose ``reset``, ``app.accounts.otp``: its send budget, its attempts, single
     use) goes to the number when it is the verified phone of an active account that is not dormant
     (a code alone never takes over a dormant account: the carrier may have recycled the number,
     as in ``phone_login``). Otherwise a decoy challenge is made and nothing is sent.
   - An email: a link (below) goes to the address when it is the verified email of an active
     account. The mail budget (``budget.reserve_mail_send``) is drawn on either way.

   Known, unknown, unverified, locked or closed: the same work, the same budget, the same answer.
2. For a phone, ``verify_reset_code``: the code (on the credential budget) gives a reset link.
3. ``read_reset_link`` and ``complete_reset``: the link (itsdangerous, the app's secret key, salt
   ``password-reset``, good ``TESSERA_PASSWORD_RESET_TTL`` seconds) names the identity it was sent
   to and the password it replaces — an HMAC of the account's password hash when it was made — so
   it is good for one reset: the first one (or any other change of the password) spends it, and
   every other link of the account with it. The new password follows the hub's rules; it replaces
   the old one by a conditional UPDATE on that hash (of two concurrent uses, one wins); every
   session of the account ends (its clients told by back-channel logout), every token is revoked,
   the person is told by SMS and email (``app.accounts.credentials``); audited
   ``account.password_reset``, actor ``self``, ``method`` ``sms`` or ``email``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from app import audit
from app.accounts.budget import reserve_mail_send
from app.accounts.credentials import Notices, end_access, notice_recipients, own_identifiers, site_name, tell
from app.accounts.identifiers import looks_like_phone, normalize_email, normalize_phone
from app.accounts.locking import lock_account
from app.accounts.mailer import send_mail
from app.accounts.models import Account, Identity
from app.accounts.otp import FAILURE, send_code, verify_code
from app.accounts.passwords import check_new_password, hash_password
from app.accounts.phone_login import is_dormant
from app.accounts.sms import SmsDeliveryFailed
from app.errors import AuthenticationFailed, InvalidInput, TesseraError
from app.extensions import db
from app.security import new_secret

log = logging.getLogger("tessera.recovery")

SALT = "password-reset"
#: The one-time code purpose of a reset (app.accounts.otp.PURPOSES).
PURPOSE = "reset"
CHANNELS = ("sms", "email")
NOT_AN_IDENTIFIER = "enter the phone number or the email address of your account"
LINK_INVALID = "this link is not valid, or was already used: ask for a new one"
LINK_EXPIRED = "this link has expired: ask for a new one"


class ResetLinkInvalid(InvalidInput):
    """A reset link that cannot be used: tampered with, expired, or spent."""


@dataclass
class ResetRequest:
    #: "sms" (the code page comes next) or "email" (the person follows the link in the message).
    channel: str
    #: For "sms": the public handle of the code's challenge (a decoy's when nothing was sent).
    challenge_uid: str | None = None


@dataclass
class ResetLink:
    identity: Identity
    account: Account
    channel: str
    #: The authorization request the person came from (an interaction uid), if any.
    interaction: str | None
    fingerprint: str


@dataclass
class ResetDone:
    channel: str
    interaction: str | None
    sessions_ended: int
    tokens_revoked: int
    notices: Notices


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def _fingerprint(identity_id: int, password_hash: str | None) -> str:
    """What a link knows of the password it replaces: it no longer matches once that changes."""
    key = hashlib.sha256(b"tessera-password-reset:" + current_app.config["SECRET_KEY"].encode("utf-8")).digest()
    return hmac.new(key, f"{identity_id}:{password_hash or ''}".encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _way_in(kind: str, value: str | None = None, identity_id: int | None = None) -> tuple[Identity, Account] | None:
    """The live, verified identity (by value, or by id) and its account, when a reset may go
    through it: an active account, and for a phone one that is not dormant. One statement
    whatever the answer."""
    query = db.select(Identity, Account).join(Account, Account.id == Identity.account_id).where(
        Identity.kind == kind, Identity.namespace == "", Identity.released_at.is_(None))
    query = query.where(Identity.id == identity_id) if identity_id is not None else query.where(Identity.value == value)
    row = db.session.execute(query).first()
    if row is None:
        return None
    identity, account = row
    if not identity.verified or not account.is_active or (kind == "phone" and is_dormant(account)):
        return None
    return identity, account


def _token(identity: Identity | None, account: Account | None, channel: str, interaction: str | None) -> str:
    """The signed part of a reset link (/password/reset/<token>)."""
    identity_id = identity.id if identity is not None else 0
    return _serializer().dumps({"i": identity_id, "c": channel, "x": interaction,
                                "f": _fingerprint(identity_id, account.password_hash if account else None)})


def request_reset(identifier: str, interaction: str | None = None) -> ResetRequest:
    """Start a reset for a typed phone number or email address. InvalidInput when it is neither
    (its shape only), BudgetSpent when the send budget is spent; otherwise the same answer for
    every number and every address."""
    text = (identifier or "").strip()
    if "@" in text:
        return _request_by_email(normalize_email(text), interaction)
    try:
        phone = normalize_phone(text)
    except InvalidInput:
        if looks_like_phone(text):
            raise  # a number, mistyped: say so
        raise InvalidInput(NOT_AN_IDENTIFIER) from None
    return _request_by_phone(phone)


def _request_by_phone(phone: str) -> ResetRequest:
    found = _way_in("phone", phone)
    try:
        # Never the account: its own send budget would count for known numbers only.
        challenge = send_code(phone, PURPOSE, deliver=found is not None)
    except SmsDeliveryFailed:
        # The same answer as for a number that is no way in (an error would tell that it is one);
        # the person, who gets no code, asks again.
        log.error("password reset code not sent: the SMS sender failed")
        return ResetRequest("sms", new_secret(24))
    return ResetRequest("sms", challenge.uid)


def _request_by_email(email: str, interaction: str | None) -> ResetRequest:
    reserve_mail_send(email)  # known address or not
    found = _way_in("email", email)
    token = _token(*(found or (None, None)), "email", interaction)  # made either way: the same work
    if found is not None:
        # Built from the issuer, not the request (as the email verification links).
        link = f"{current_app.config['TESSERA_ISSUER']}/password/reset/{token}"
        minutes = max(1, current_app.config["TESSERA_PASSWORD_RESET_TTL"] // 60)
        try:
            send_mail(email, "Reset your password",
                      f"Someone asked to reset the password of your account at {site_name()}. Open this link "
                      f"within {minutes} minutes to choose a new one (it works once):\n\n{link}\n\n"
                      "If it was not you, ignore this message: your password stays as it is.", link=link)
        except (TesseraError, OSError) as exc:
            log.error("password reset link not sent to account %s: %s", found[1].id, exc)
    return ResetRequest("email")


def verify_reset_code(challenge_uid: str, code: str, interaction: str | None = None) -> str:
    """The reset link's token a right code to the phone gives. AuthenticationFailed (one message for
    every case, as ``otp.verify_code``) otherwise; BudgetSpent when the credential budget is spent."""
    challenge = verify_code(challenge_uid, code, PURPOSE)
    found = _way_in("phone", challenge.phone)
    if found is None:  # a decoy's code (guessed), or the account changed since the code was sent
        raise AuthenticationFailed(FAILURE)
    return _token(*found, "sms", interaction)


def read_reset_link(token: str) -> ResetLink:
    """What a reset link names, if it can still be used; ResetLinkInvalid otherwise."""
    try:
        data = _serializer().loads(token or "", max_age=current_app.config["TESSERA_PASSWORD_RESET_TTL"])
    except SignatureExpired:
        raise ResetLinkInvalid(LINK_EXPIRED) from None
    except BadSignature:
        raise ResetLinkInvalid(LINK_INVALID) from None
    if (not isinstance(data, dict) or not isinstance(data.get("i"), int) or data.get("c") not in CHANNELS
            or not isinstance(data.get("f"), str) or not isinstance(data.get("x"), str | None)):
        raise ResetLinkInvalid(LINK_INVALID)
    found = _way_in("phone" if data["c"] == "sms" else "email", identity_id=data["i"])
    if found is None or not hmac.compare_digest(data["f"], _fingerprint(data["i"], found[1].password_hash)):
        raise ResetLinkInvalid(LINK_INVALID)
    return ResetLink(found[0], found[1], data["c"], data["x"], data["f"])


def complete_reset(token: str, password: str) -> ResetDone:
    """Set the new password a reset link allows; ResetLinkInvalid when the link cannot be used,
    InvalidInput when the rules refuse the password (the link stays good)."""
    link = read_reset_link(token)
    check_new_password(password, own_identifiers(link.account.id))
    password_hash = hash_password(password)  # before the row lock: argon2id takes a while
    account = lock_account(link.account.id)
    old = account.password_hash if account is not None else None
    if account is None or not account.is_active or not hmac.compare_digest(
            link.fingerprint, _fingerprint(link.identity.id, old)):
        db.session.rollback()
        raise ResetLinkInvalid(LINK_INVALID)
    # Single use: only while the password is still the one the link was made for.
    unchanged = Account.password_hash.is_(None) if old is None else Account.password_hash == old
    replaced = db.session.execute(
        update(Account).where(Account.id == account.id, unchanged).values(password_hash=password_hash)
        .execution_options(synchronize_session=False)
    ).rowcount
    if replaced != 1:
        db.session.rollback()
        raise ResetLinkInvalid(LINK_INVALID)
    set_committed_value(account, "password_hash", password_hash)
    ended, revoked = end_access(account.id)
    recipients = notice_recipients(account.id)
    audit.record("account.password_reset", account_id=account.id, actor="self", method=link.channel,
                 sessions_ended=ended, tokens_revoked=revoked, notify=sorted(recipients))
    db.session.commit()
    proof = "a code sent to your phone" if link.channel == "sms" else "a link sent to your email"
    notices = tell(recipients, "Your password was reset",
                   f"The password of your account at {site_name()} was reset with {proof}. You were logged "
                   "out everywhere. If you did not do this, contact support.", "password_reset", account.id)
    return ResetDone(link.channel, link.interaction, ended, revoked, notices)
