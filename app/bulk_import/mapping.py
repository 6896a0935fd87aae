"""Legacy-id mapping export: for each (tenant, legacy id), the ``sub`` one client sees for the
account the legacy record ended in (following merges), so a subsidiary can rewrite its foreign
keys. The subjects handed out are recorded in ``subject_mappings`` like any other (they must
never change once a client holds them), in batches."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.accounts.models import Account
from app.bulk_import.models import LegacyMapping
from app.errors import NotFound
from app.extensions import db
from app.oidc.clients import get_client
from app.oidc.models import SubjectMapping
from app.oidc.subjects import compute_subject, sector_of
from app.tenants.models import Tenant

COLUMNS = ("legacy_id", "sub", "status")


def mapping_rows(tenant: str, client_id: str, *, batch_size: int = 5000) -> Iterator[tuple[str, str, str]]:
    """(legacy id, sub, status of the account it ended in) in legacy-id order, streamed."""
    tenant_row = db.session.scalar(select(Tenant).filter_by(slug=tenant))
    if tenant_row is None:
        raise NotFound(f"no tenant {tenant!r}")
    client = get_client(client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    sector = sector_of(client)
    after = ""
    while True:
        rows = db.session.execute(
            select(LegacyMapping.legacy_id, LegacyMapping.account_id)
            .where(LegacyMapping.tenant_id == tenant_row.id, LegacyMapping.legacy_id > after)
            .order_by(LegacyMapping.legacy_id).limit(batch_size)
        ).all()
        if not rows:
            return
        after = rows[-1].legacy_id
        final = _follow_merges({r.account_id for r in rows})
        subs = _subjects(sector, {account_id for account_id, _ in final.values()})
        db.session.commit()
        for legacy_id, account_id in rows:
            end, status = final[account_id]
            yield legacy_id, subs[end], status


def _follow_merges(account_ids: set[int]) -> dict[int, tuple[int, str]]:
    """account id → (the account it ended in, that account's status), along merged_into chains."""
    final = {}
    current = {a: a for a in account_ids}
    for _ in range(64):  # chains are short; a cycle cannot hold more accounts than this
        rows = {r.id: r for r in db.session.execute(
            select(Account.id, Account.status, Account.merged_into_id).where(Account.id.in_(set(current.values())))
        )}
        moving = {}
        for start, at in current.items():
            row = rows[at]
            if row.status == "merged" and row.merged_into_id and row.merged_into_id != at:
                moving[start] = row.merged_into_id
            else:
                final[start] = (at, row.status)
        if not moving:
            return final
        current = moving
    raise RuntimeError("merged_into chain longer than 64 accounts")


def _subjects(sector: str, account_ids: set[int]) -> dict[int, str]:
    """The recorded own subjects of these accounts in a sector, recording the missing ones
    (the same values ``subject_for`` would record)."""
    subs = dict(db.session.execute(
        select(SubjectMapping.account_id, SubjectMapping.sub)
        .where(SubjectMapping.sector == sector, SubjectMapping.alias.is_(False), SubjectMapping.account_id.in_(account_ids))
    ).all())
    missing = [{"sector": sector, "account_id": a, "sub": compute_subject(sector, a), "alias": False}
               for a in sorted(account_ids - set(subs))]
    if missing:
        # Deterministic values: a concurrent login recording the same subject is no conflict.
        insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        db.session.execute(insert(SubjectMapping).on_conflict_do_nothing(), missing)
        subs.update((row["account_id"], row["sub"]) for row in missing)
    return subs


def export_mapping(tenant: str, client_id: str, out) -> int:
    """Write the mapping as CSV (legacy_id,sub,status) to a text stream; returns the row count."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for row in mapping_rows(tenant, client_id):
        writer.writerow(row)
        count += 1
    return count
