"""Operators acting on a person's credentials and consents (``tessera users reset-password|revoke|
close``, later the admin API with its own ``actor``): the services beside app.accounts.operators.

Rules:

- Each runs under the account write lock (``operators.locked_account``: the row lock, then the
  merge lock), in one transaction, audited on the account with ``actor`` (the person sees it in
  their security history, /account). Bad input is an ``InvalidInput``, an unknown account or client
  a ``NotFound``, an account in the wrong state a ``Conflict``.
- Resetting a password: the new one follows the hub's rules (``passwords.check_new_password``) or
  is generated, and is stored as every password is (argon2id; app.accounts.credentials, which the
  person's own reset and change share). Every session of the account ends
  (its clients are told by back-channel logout), every token is revoked and the authorization codes
  not yet exchanged are voided; consents stay. After the commit the person is told, by SMS to a
  verified phone and by email to a verified address, that an operator reset the password (never
  the password itself). An active or a locked account (the recovery of one locked with no way in).
- Revoking: the consents the person gave (to every client, or one) are deleted and the tokens the
  clients hold revoked; sessions stay.
- Closing: what the person's own close at /account/deregister does (``binding.close_account``),
  with the cooling-off of the identities, from an active or a locked account, with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete

from app import audit
from app.accounts.binding import Closure, close_account
from app.accounts.credentials import end_access, notice_recipients, own_identifiers, site_name, tell
from app.accounts.models import Account
from app.accounts.operators import OPERATOR, checked_reason, locked_account, resolve_account
from app.accounts.passwords import check_new_password, generate_password, hash_password
from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.oidc.clients import load_client_row
from app.oidc.connections import revoke_account_tokens
from app.oidc.models import Consent

#: The states a password reset or a close is done in (a locked account is recovered or closed).
ACTIVE_OR_LOCKED = ("active", "locked")


@dataclass
class PasswordReset:
    account: Account
    #: The generated password, to be given to the person once; None when the operator chose it.
    generated_password: str | None
    sessions_ended: int
    tokens_revoked: int
    #: Where the notice went ("sms", "email") and where it could not go ("sms: why").
    notified: list[str] = field(default_factory=list)
    not_notified: list[str] = field(default_factory=list)


@dataclass
class Revocation:
    account: Account
    #: The client_id of the one client, or None: every client.
    client: str | None
    consents_removed: int
    tokens_revoked: int


def reset_password(ref: str | int, password: str | None = None, *, generate: bool = False,
                   actor: str = OPERATOR) -> PasswordReset:
    """Give the account a new password (``password``, or a generated one with ``generate``)."""
    if (password is None) == (not generate):
        raise InvalidInput("give either a new password or ask for a generated one")
    password = generate_password() if generate else password
    check_new_password(password, own_identifiers(resolve_account(ref).id))
    password_hash = hash_password(password)  # before the row lock: argon2id takes a while
    account = locked_account(ref)
    if account.status not in ACTIVE_OR_LOCKED:
        raise Conflict(f"account {account.id} is {account.status}: only an active or locked account's "
                       "password can be reset")
    account.password_hash = password_hash
    ended, revoked = end_access(account.id)
    recipients = notice_recipients(account.id)
    audit.record("account.password_reset", account_id=account.id, actor=actor, generated=generate,
                 sessions_ended=ended, tokens_revoked=revoked, notify=sorted(recipients))
    db.session.commit()
    # After the commit: a message never tells of a reset that did not happen.
    text = (f"An operator reset the password of your account at {site_name()}. You were logged out everywhere. "
            "If you did not ask for this, contact support.")
    notices = tell(recipients, "Your password was reset", text, "password_reset", account.id)
    return PasswordReset(account, password if generate else None, ended, revoked, notices.notified,
                         notices.not_notified)


def revoke_access(ref: str | int, client: str | None = None, actor: str = OPERATOR) -> Revocation:
    """Delete the account's consents and revoke its tokens, at every client or at ``client``
    (its client_id)."""
    if client is not None and not isinstance(client, str):
        raise InvalidInput("a client is named by its client_id")
    account = locked_account(ref)
    row = load_client_row(client) if client is not None else None
    consents = delete(Consent).where(Consent.account_id == account.id)
    if row is not None:
        consents = consents.where(Consent.client_id == row.id)
    removed = db.session.execute(consents).rowcount
    revoked = revoke_account_tokens(account.id, row.id if row is not None else None)
    audit.record("account.consents_revoked", account_id=account.id, actor=actor,
                 client_id=row.id if row is not None else None, consents_removed=removed, tokens_revoked=revoked)
    db.session.commit()
    return Revocation(account, client, removed, revoked)


def close(ref: str | int, reason: str | None, actor: str = OPERATOR) -> Closure:
    """Close the account as its holder's own close does (``binding.close_account``), with a reason."""
    reason = checked_reason(reason)
    account = locked_account(ref)
    if account.status not in ACTIVE_OR_LOCKED:
        raise Conflict(f"account {account.id} is {account.status}: only an active or locked account can be closed")
    return close_account(account.id, actor=actor, reason=reason, statuses=ACTIVE_OR_LOCKED)
