"""A new password and what goes with it, whoever sets it: the person's reset
(``app.accounts.recovery``), their change or first password at /account (``change_password``
here), an operator's reset (``app.accounts.operator_actions``).

- The new password follows the hub's rules (``passwords.check_new_password``, which is given the
  person's own identifiers) and is stored as every password is (argon2id), hashed before the
  account's row lock (argon2id takes a while).
- ``end_access``: the account's sessions end (every one, or every one but the person's own) with a
  back-channel logout to the clients each was used at, and its tokens are revoked (every one, or
  every one but those of the kept session), in the caller's transaction.
- ``notice_recipients`` and ``tell``: after the commit (a message never tells of a change that did
  not happen), the person is told by SMS to their verified phone and by email to their verified
  address — never the password itself. A channel that fails is reported, never raised.

A change at /account needs a recent login (the route's ``/account/confirm``) and, when the account
has a password, that password (``login.confirm_password``: on the credential budget, audited);
an account without one (a phone-only account) sets its first. Audited ``account.password_changed``
(``first``: there was none before); the other sessions end and their tokens are revoked, the
person's own session and its tokens stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app

from app import audit
from app.accounts.binding import live_identities
from app.accounts.locking import lock_account
from app.accounts.login import confirm_password
from app.accounts.mailer import send_mail
from app.accounts.models import Account
from app.accounts.operators import live_session_count
from app.accounts.passwords import check_new_password, hash_password
from app.accounts.sms import send_sms_notice
from app.errors import AuthenticationFailed, Conflict, TesseraError
from app.extensions import db
from app.oidc.connections import revoke_account_tokens
from app.oidc.logout import close_account_sessions
from app.oidc.models import SSOSession

log = logging.getLogger("tessera.credentials")


@dataclass
class Notices:
    #: Where the notice went ("sms", "email") and where it could not go ("sms: why").
    notified: list[str] = field(default_factory=list)
    not_notified: list[str] = field(default_factory=list)


@dataclass
class PasswordChanged:
    #: True: the account had no password before (a first password).
    first: bool
    sessions_ended: int
    tokens_revoked: int
    notices: Notices


def site_name() -> str:
    """The hub as people know it in a message: the host of its issuer."""
    return urlsplit(current_app.config["TESSERA_ISSUER"]).netloc


def own_identifiers(account_id: int) -> list[str]:
    """The account's live phone numbers, emails and usernames: a new password may be none of them."""
    return [i.value for i in live_identities(account_id) if i.kind in ("phone", "email", "username")]


def end_access(account_id: int, keep: SSOSession | None = None) -> tuple[int, int]:
    """End the account's sessions (but ``keep``) and revoke its tokens (but those of ``keep``), in
    the caller's transaction; returns (sessions ended, tokens revoked)."""
    keep_sid = keep.sid if keep is not None else None
    ended = live_session_count(account_id) - (1 if keep is not None and keep.ended_at is None else 0)
    close_account_sessions(account_id, keep_sid=keep_sid)
    return ended, revoke_account_tokens(account_id, keep_sid=keep_sid)


def notice_recipients(account_id: int) -> dict[str, str]:
    """The verified phone and the verified email of the account (the oldest of each), by channel."""
    found: dict[str, str] = {}
    for identity in live_identities(account_id):
        channel = {"phone": "sms", "email": "email"}.get(identity.kind)
        if channel and identity.verified:
            found.setdefault(channel, identity.value)
    return found


def tell(recipients: dict[str, str], subject: str, text: str, purpose: str, account_id: int) -> Notices:
    """Send a notice (no code, no password) to each recipient; after the commit of the change."""
    notices = Notices()
    for channel, to in sorted(recipients.items()):
        try:
            if channel == "sms":
                send_sms_notice(to, text, purpose)
            else:
                send_mail(to, subject, text)
        except (TesseraError, OSError) as exc:
            log.error("%s notice by %s to account %s failed: %s", purpose, channel, account_id, exc)
            notices.not_notified.append(f"{channel}: {getattr(exc, 'detail', None) or exc}")
        else:
            notices.notified.append(channel)
    return notices


def change_password(account_id: int, session: SSOSession, current: str | None, new: str) -> PasswordChanged:
    """The person's own change (``current``: their password, required when the account has one)
    or first password, from the hub session ``session``, which stays with its tokens.
    AuthenticationFailed for a wrong current password, InvalidInput for a new one the rules refuse,
    Conflict when the account is no longer active."""
    account = db.session.get(Account, account_id)
    first = account is None or not account.password_hash
    check_new_password(new, own_identifiers(account_id))  # public rules: before any secret is checked
    if not first:
        if not current:
            raise AuthenticationFailed("enter your current password")
        confirm_password(account_id, current)  # on the credential budget, audited reauth.*
    password_hash = hash_password(new)  # before the row lock: argon2id takes a while
    account = lock_account(account_id)
    if account is None or not account.is_active:
        db.session.rollback()
        raise Conflict("this account is not active")
    if first and account.password_hash:
        db.session.rollback()  # a password was set meanwhile (another tab): prove it first
        raise AuthenticationFailed("your account has a password now: enter it as your current password")
    account.password_hash = password_hash
    ended, revoked = end_access(account_id, keep=session)
    recipients = notice_recipients(account_id)
    audit.record("account.password_changed", account_id=account_id, actor="self", first=first,
                 sessions_ended=ended, tokens_revoked=revoked, notify=sorted(recipients))
    db.session.commit()
    if first:
        subject, opening = "A password was added to your account", "A password was added to your account"
    else:
        subject, opening = "Your password was changed", "The password of your account was changed"
    text = (f"{opening} at {site_name()}. Your other sessions were logged out. "
            "If you did not do this, reset your password and contact support.")
    notices = tell(recipients, subject, text, "password_set" if first else "password_changed", account_id)
    return PasswordChanged(first, ended, revoked, notices)
