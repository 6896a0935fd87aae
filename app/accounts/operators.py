"""Operators acting on people (``tessera users …``, later the admin API): find accounts, show one
with its identities, sessions, consents, merges and audit trail, lock, unlock and log out
(resetting a password, revoking, closing: app.accounts.operator_actions; the person's data as
JSON: app.accounts.data_export).

Rules:

- ``ACCOUNT`` is an account id, or a phone or (verified) email that identifies it
  (``resolve_account``).
- Lock and unlock go through the account write lock (``app.accounts.locking.lock_account``): the
  row lock, then the merge lock (``AccountBusy`` while a merge runs), then the status check.
- Locking an active account announces ``account_locked``: its sessions end and their clients are
  told by back-channel logout, in the same transaction.
- Unlocking a locked account needs a way in (``binding.ways_in``): an account the recycled-number
  rule locked has lost its last one, and stays locked until it has one again.
- Every write is audited with the operator as actor, on the account (so the person sees it in
  their own security history, /account).
"""

from __future__ import annotations

import re

from sqlalchemy import func

from app import audit
from app.accounts.binding import live_identities, ways_in
from app.accounts.identifiers import normalize_email, normalize_phone, normalize_username
from app.accounts.locking import lock_account
from app.accounts.login import find_identity
from app.accounts.models import Account, AuditEvent, Identity
from app.bulk_import.models import LegacyMapping
from app.errors import Conflict, InvalidInput, NotFound
from app.extensions import db
from app.merging.models import MergeRecord
from app.oidc.clients import load_client_row
from app.oidc.logout import close_account_sessions
from app.oidc.models import Client, Consent, SSOSession
from app.oidc.subjects import accounts_for_subjects
from app.signals import account_locked
from app.tenants.service import get_tenant

OPERATOR = "operator:cli"
SEARCH_LIMIT = 100


#: Account ids are 32-bit integers: a larger number names no account (and must not reach the database).
MAX_ACCOUNT_ID = 2**31 - 1
#: The longest reason kept in the audit log.
MAX_REASON_LENGTH = 500


def resolve_account(ref: str | int) -> Account:
    """An account by id, or by a phone number or email that identifies it."""
    if isinstance(ref, int) or re.fullmatch(r"[0-9]+", str(ref)):
        account = db.session.get(Account, int(ref)) if 0 < int(ref) <= MAX_ACCOUNT_ID else None
    else:
        identity = find_identity(str(ref))
        account = db.session.get(Account, identity.account_id) if identity else None
    if account is None:
        raise NotFound(f"no account {ref!r}")
    return account


# --- finding -------------------------------------------------------------------------------------

def search_accounts(*, phone: str | None = None, email: str | None = None, username: str | None = None,
                    tenant: str | None = None, name: str | None = None, sub: str | None = None,
                    client: str | None = None, legacy_id: str | None = None) -> list[Account]:
    """The accounts one criterion names: a phone, an email (verified or not), a username or a
    legacy id at a tenant (its slug), a subject a client holds, or a name (case-insensitive
    substring, at most ``SEARCH_LIMIT``). Identifiers find live identities only."""
    given = {k for k, v in dict(phone=phone, email=email, username=username, name=name, sub=sub,
                                legacy_id=legacy_id).items() if v}
    if len(given) != 1:
        raise InvalidInput("give exactly one of --phone, --email, --username, --name, --sub, --legacy-id")
    if (username or legacy_id) and not tenant:
        raise InvalidInput("--username and --legacy-id need --tenant")
    if sub and not client:
        raise InvalidInput("--sub needs --client")
    if tenant and not (username or legacy_id):
        raise InvalidInput("--tenant goes with --username or --legacy-id")
    if client and not sub:
        raise InvalidInput("--client goes with --sub")
    return _accounts(_account_ids(phone, email, username, tenant, name, sub, client, legacy_id))


def _account_ids(phone, email, username, tenant, name, sub, client, legacy_id) -> list[int]:
    if phone:
        return _holders("phone", "", normalize_phone(phone))
    if email:
        return _holders("email", "", normalize_email(email))
    if username:
        return _holders("username", str(get_tenant(tenant).id), normalize_username(username))
    if sub:
        return list(accounts_for_subjects(load_client_row(client), [sub]).values())
    if legacy_id:
        return list(db.session.scalars(db.select(LegacyMapping.account_id).filter_by(
            tenant_id=get_tenant(tenant).id, legacy_id=legacy_id)))
    pattern = "%" + name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(db.session.scalars(db.select(Account.id).where(func.lower(Account.name).like(pattern, escape="\\"))
                                   .order_by(Account.id).limit(SEARCH_LIMIT)))


def _holders(kind: str, namespace: str, value: str) -> list[int]:
    return list(db.session.scalars(db.select(Identity.account_id).filter_by(
        kind=kind, namespace=namespace, value=value, released_at=None)))


def _accounts(ids: list[int]) -> list[Account]:
    if not ids:
        return []
    return list(db.session.scalars(db.select(Account).where(Account.id.in_(set(ids))).order_by(Account.id)))


# --- showing -------------------------------------------------------------------------------------

def account_summary(account: Account) -> dict:
    """One line's worth: id, status, name, the live identities (kind:value)."""
    return {"id": account.id, "status": account.status, "name": account.name,
            "identities": [f"{i.kind}:{i.value}" for i in live_identities(account.id)],
            "created_at": account.created_at, "last_login_at": account.last_login_at}


def account_overview(account: Account, events: int = 20) -> dict:
    """Everything an operator needs about one account: its summary and status details, every
    identity (released ones too), the live sessions, the consents, the merges it took part in,
    whether it has a way in, and the newest audit events."""
    data = account_summary(account)
    data.update(merged_into=account.merged_into_id, closed_at=account.closed_at,
                has_password=bool(account.password_hash), can_log_in=bool(ways_in(account)),
                identities=identity_rows(account.id), sessions=_sessions(account.id), consents=_consents(account.id),
                merges=merge_rows(account.id),
                events=audit.events_to_dicts(audit.recent_events(account.id, events)))
    return data


def identity_rows(account_id: int) -> list[dict]:
    """Every identity of the account, released ones too, oldest first."""
    rows = db.session.scalars(db.select(Identity).filter_by(account_id=account_id).order_by(Identity.id))
    return [{"id": i.id, "kind": i.kind, "namespace": i.namespace or None, "value": i.value, "verified": i.verified,
             "created_at": i.created_at, "last_used_at": i.last_used_at, "released_at": i.released_at} for i in rows]


def _sessions(account_id: int) -> list[dict]:
    rows = db.session.scalars(db.select(SSOSession).filter_by(account_id=account_id, ended_at=None)
                              .order_by(SSOSession.id))
    return [{"sid": s.sid, "created_at": s.created_at, "last_seen_at": s.last_seen_at, "expires_at": s.expires_at,
             "ip_address": s.ip_address, "user_agent": s.user_agent, "amr": s.amr} for s in rows]


def _consents(account_id: int) -> list[dict]:
    rows = db.session.execute(db.select(Consent, Client.client_id).join(Client, Client.id == Consent.client_id)
                              .where(Consent.account_id == account_id).order_by(Consent.id))
    return [{"client": client_id, "scope": c.scope, "updated_at": c.updated_at} for c, client_id in rows]


def merge_rows(account_id: int) -> list[dict]:
    """The merges the account took part in, as survivor or absorbed."""
    rows = db.session.scalars(db.select(MergeRecord).where(
        (MergeRecord.survivor_id == account_id) | (MergeRecord.absorbed_id == account_id)).order_by(MergeRecord.id))
    return [{"id": m.id, "survivor": m.survivor_id, "absorbed": m.absorbed_id, "status": m.status,
             "origin": m.origin, "created_at": m.created_at} for m in rows]


# --- acting --------------------------------------------------------------------------------------

def lock(ref: str | int, reason: str, actor: str = OPERATOR) -> Account:
    """Lock an active account: nobody logs in to it, its sessions end (``account_locked``)."""
    reason = checked_reason(reason)
    account = locked_account(ref)
    if account.status != "active":
        raise Conflict(f"account {account.id} is {account.status}: only an active account can be locked")
    account.status = "locked"
    ended = live_session_count(account.id)
    account_locked.send(account, reason="operator")
    audit.record("account.locked", account_id=account.id, actor=actor, reason=reason, sessions_ended=ended)
    db.session.commit()
    return account


def unlock(ref: str | int, actor: str = OPERATOR) -> Account:
    """Unlock a locked account, if it has a way to log in (``binding.ways_in``)."""
    account = locked_account(ref)
    if account.status != "locked":
        raise Conflict(f"account {account.id} is {account.status}, not locked")
    if not ways_in(account):
        raise Conflict(_no_way_in(account))
    account.status = "active"
    audit.record("account.unlocked", account_id=account.id, actor=actor)
    db.session.commit()
    return account


def logout(ref: str | int, actor: str = OPERATOR) -> int:
    """End every live session of the account; clients are told as for any logout. Returns how many."""
    account = resolve_account(ref)
    ended = live_session_count(account.id)
    close_account_sessions(account.id)
    audit.record("account.logged_out", account_id=account.id, actor=actor, sessions_ended=ended)
    db.session.commit()
    return ended


def locked_account(ref: str | int) -> Account:
    """The account ``ref`` names, under the account write lock (row lock, then the merge lock)."""
    return lock_account(resolve_account(ref).id)


def checked_reason(reason: str | None) -> str:
    """An operator's reason for the audit log: required, at most ``MAX_REASON_LENGTH`` characters."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise InvalidInput("a reason is required")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"a reason has at most {MAX_REASON_LENGTH} characters")
    return reason


def live_session_count(account_id: int) -> int:
    return db.session.scalar(db.select(func.count()).select_from(SSOSession)
                             .filter_by(account_id=account_id, ended_at=None))


def _no_way_in(account: Account) -> str:
    """Why a locked account cannot be unlocked: it has no way to log in."""
    last = db.session.scalar(db.select(AuditEvent).filter_by(account_id=account.id, kind="account.locked")
                             .order_by(AuditEvent.id.desc()))
    why = f" (locked by {last.actor}: {last.details.get('reason')})" if last is not None else ""
    return (f"account {account.id} has no way to log in{why}: it needs a verified phone, an upstream login, "
            "or a verified email or username with a password; unlocking it would leave nobody able to use it. "
            "The person can recover it only once one is added")

