"""The account write lock: one order for every write to an account and every login.

1. The account row is locked (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serializes writers
   with its file lock) and re-read, so what the caller sees next is current.
2. The guards that features registered run (the merge lock: ``app.merging`` registers one that
   raises ``AccountBusy`` while a merge holds the account).
3. The caller checks the status it needs and writes, in the same transaction.

A merge takes the same row locks before it takes (or re-checks) its merge lock, so a write or a
login either commits before the merge reads the account, or sees the merge lock, or sees the
account merged: nothing lands on an account a merge is closing. The core never imports a feature:
features add their guards here when their module loads (``register_write_guard``).
"""

from __future__ import annotations

from collections.abc import Callable

from app.accounts.models import Account
from app.extensions import db

#: Called with the account id under the row lock; raise a TesseraError to refuse the write.
_write_guards: list[Callable[[int], None]] = []


def register_write_guard(guard: Callable[[int], None]) -> None:
    """A feature asks to veto writes and logins to an account (idempotent)."""
    if guard not in _write_guards:
        _write_guards.append(guard)


def lock_row(account_id: int) -> Account | None:
    """Step 1 only: the account row, locked and re-read (``populate_existing``)."""
    for_update = db.session.get_bind().dialect.name == "postgresql"
    db.session.flush()  # the caller's pending changes first: the re-read must not drop them
    return db.session.get(Account, account_id, with_for_update=for_update or None, populate_existing=True)


def lock_account(account_id: int) -> Account | None:
    """Steps 1 and 2: lock the row, then run the registered guards. The caller checks the status."""
    account = lock_row(account_id)
    for guard in _write_guards:
        guard(account_id)
    return account
