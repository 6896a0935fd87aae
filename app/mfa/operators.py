"""Operators resetting a person's second factors (``tessera users reset-mfa``, the admin API): every
factor a feature registered (``registries.second_factors``) is removed in one transaction, audited
on the account with the operator as actor, and the person is told. The person logs in with their
first factor again and sets up a new one (or is asked to, where a site requires one)."""

from __future__ import annotations

from app import audit
from app.accounts.locking import lock_account
from app.accounts.operators import resolve_account
from app.errors import Conflict
from app.extensions import db
from app.mfa import notify, trusted
from app.registries import registries


def reset_second_factors(ref: str | int, *, actor: str) -> dict[str, int]:
    """Remove every second factor of the account; how many of each kind went. Conflict when it has none."""
    account = lock_account(resolve_account(ref).id)
    removed = {}
    for factor in registries().second_factors:
        if factor.remove is not None:
            count = factor.remove(account.id, actor)
            if count:
                removed[factor.name] = count
    if not removed:
        db.session.rollback()
        raise Conflict(f"account {account.id} has no second factor to reset")
    forgotten = trusted.forget_for_reset(account.id, actor)
    if forgotten:
        removed["remembered_browsers"] = forgotten
    audit.record("mfa.reset", account_id=account.id, actor=actor, removed=removed)
    db.session.commit()
    notify.factor_changed(account.id, "reset")
    return removed
