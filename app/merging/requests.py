"""Merge requests: recording a merge, the accounts it names, whether a phone binding merges at
once, the merge lock logins check, and merge records as data (``tessera merges``, the metrics).

A request names two distinct active accounts and is idempotent (the same pair returns the existing
merge, unless that one failed or was cancelled); an account already merged is refused, and the
answer names the account it went into. While a merge runs, both accounts are locked (``merge_locks``) and logins
get a retry answer (``AccountBusy``).
"""

from __future__ import annotations

import hashlib

from flask import current_app

from app import audit
from app.accounts.models import Account
from app.errors import Conflict, InvalidInput, NotFound, TesseraError
from app.extensions import db
from app.merging.models import ENDED_UNDONE, MergeLock, MergeRecord


class AccountBusy(TesseraError):
    """The account is under a merge right now: try again in a few seconds."""

    status = 503
    title = "Account being merged"


def final_account(account: Account) -> Account:
    """The account ``account`` ended in: itself, or the survivor at the end of its merges."""
    seen = set()
    while account.status == "merged" and account.merged_into_id and account.id not in seen:
        seen.add(account.id)
        account = db.session.get(Account, account.merged_into_id)
    return account


def request_merge(survivor_id: int, absorbed_id: int, *, origin: str, reason: str | None = None,
                  regrant_consents: bool = False, actor: str | None = None) -> MergeRecord:
    """Record a merge (idempotent: the same pair returns the existing merge, unless that one failed
    or was cancelled)."""
    if origin not in ("user", "phone_binding", "operator", "import"):
        raise InvalidInput(f"unknown merge origin {origin!r}")
    if survivor_id == absorbed_id:
        raise InvalidInput("an account cannot be merged into itself")
    existing = db.session.scalar(
        db.select(MergeRecord).filter_by(survivor_id=survivor_id, absorbed_id=absorbed_id)
        .where(MergeRecord.status.not_in(ENDED_UNDONE)).order_by(MergeRecord.id.desc())
    )
    if existing is not None:
        return existing
    survivor = db.session.get(Account, survivor_id)
    absorbed = db.session.get(Account, absorbed_id)
    if survivor is None or absorbed is None:
        raise NotFound("both accounts must exist")
    if absorbed.status == "merged":
        raise Conflict(f"account {absorbed.id} was already merged into account {final_account(absorbed).id}")
    if survivor.status == "merged":
        raise Conflict(f"account {survivor.id} was merged into account {final_account(survivor).id}: merge into that one")
    if survivor.status != "active" or absorbed.status != "active":
        raise Conflict("only active accounts can be merged")
    record = MergeRecord(survivor_id=survivor_id, absorbed_id=absorbed_id, origin=origin, reason=reason,
                         regrant_consents=regrant_consents, report={})
    db.session.add(record)
    db.session.flush()
    audit.record("merge.requested", account_id=survivor_id, actor=actor or origin, merge_id=record.id,
                 absorbed_id=absorbed_id, reason=reason)
    db.session.commit()
    return record


def auto_merge_allowed(account_id: int, tenant=None) -> bool:
    """Whether a phone binding that meets an account with data merges at once (seed 001's
    scheduling centre): on for ``TESSERA_AUTO_MERGE_SHARE`` percent of accounts (0 = never, the
    default: the user is asked; 100 = always), or the tenant's ``auto_merge_share`` policy when
    the binding happens in a tenant's context. The share is a stable bucket of the account id."""
    share = current_app.config["TESSERA_AUTO_MERGE_SHARE"]
    if tenant is not None and "auto_merge_share" in (tenant.policy or {}):
        share = tenant.policy["auto_merge_share"]
    bucket = int(hashlib.sha256(f"auto-merge:{account_id}".encode()).hexdigest(), 16) % 100
    return bucket < max(0, min(100, int(share)))


def is_locked(account_id: int) -> bool:
    return db.session.get(MergeLock, account_id) is not None


def ensure_not_locked(account_id: int) -> None:
    """Logins call this: while a merge runs, they get a clear retry answer."""
    if is_locked(account_id):
        raise AccountBusy("this account is being merged with another one: try again in a few seconds")


def merge_to_dict(record: MergeRecord) -> dict:
    return {"id": record.id, "survivor": record.survivor_id, "absorbed": record.absorbed_id, "origin": record.origin,
            "reason": record.reason, "step": record.step, "status": record.status, "report": record.report,
            "last_error": record.last_error, "created_at": record.created_at, "completed_at": record.completed_at}


def merge_counters() -> dict[str, int]:
    rows = db.session.execute(db.select(MergeRecord.status, db.func.count()).group_by(MergeRecord.status)).all()
    return {status: count for status, count in rows}
