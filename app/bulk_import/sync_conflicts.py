"""Identifiers held by hub accounts a tenant's legacy system did not create (dual write and lazy
migration, app.bulk_import.sync). A legacy system speaks only for what it created: a new legacy
id naming such an identifier is never linked on its word (its ``*_verified`` flags prove nothing
about someone else's account). The change waits as a ``SyncConflict`` (answer ``pending_proof``)
until the person logs in to the account holding that identifier at a site of the tenant
(``sync.confirm_links``), or the legacy system deletes the legacy id (``withdraw_conflict``).
Here: who holds an identifier, whether the tenant created that account, and the conflict rows;
docs/flows/sync-and-lazy-migration.md explains the rules."""

from __future__ import annotations

from datetime import datetime

from app import audit
from app.accounts.models import Identity
from app.bulk_import.models import LegacyMapping, SyncConflict
from app.bulk_import.records import LegacyRecord, iso_time
from app.errors import NotFound
from app.extensions import db
from app.security import utcnow
from app.tenants.models import Tenant


def live_holder(kind: str, namespace: str, value: str) -> Identity | None:
    """The live identity holding this identifier, or None."""
    return db.session.scalar(
        db.select(Identity).filter_by(kind=kind, namespace=namespace, value=value, released_at=None)
    )


#: identity kind → the import's conflict kind (docs/flows/import.md)
CONFLICT_KINDS = {"phone": "same_phone", "email": "shared_email", "username": "duplicate_username",
                  "upstream": "same_upstream"}


def _identifiers(tenant: Tenant, record: LegacyRecord) -> list[tuple[str, str, str]]:
    """The record's identifiers as (kind, namespace, value), the anchor first."""
    keys = []
    if record.phone:
        keys.append(("phone", "", record.phone))
    if record.email:
        keys.append(("email", "", record.email))
    if record.username:
        keys.append(("username", str(tenant.id), record.username))
    keys += [("upstream", u.provider, u.subject) for u in record.upstreams]
    return keys


def created_by_tenant(account_id: int, tenant_id: int) -> bool:
    """Whether a live legacy record of the tenant created this account."""
    return db.session.scalar(
        db.select(LegacyMapping.id).filter_by(tenant_id=tenant_id, account_id=account_id, created_account=True,
                                              deleted_at=None).limit(1)
    ) is not None


def held_by_another(tenant: Tenant, record: LegacyRecord) -> Identity | None:
    """The first of the record's identifiers held by an account this tenant's legacy system did not
    create (its verification flags prove nothing about someone else's account), or None."""
    for kind, namespace, value in _identifiers(tenant, record):
        holder = live_holder(kind, namespace, value)
        if holder is not None and not created_by_tenant(holder.account_id, tenant.id):
            return holder
    return None


def find_conflict(tenant_id: int, legacy_id: str, *, lock: bool = False) -> SyncConflict | None:
    query = db.select(SyncConflict).filter_by(tenant_id=tenant_id, legacy_id=legacy_id)
    if lock and db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.scalar(query)


def record_conflict(tenant: Tenant, record: LegacyRecord, held: Identity, row: SyncConflict | None, *,
                    version: int | None, updated_at: datetime | None, source: str, context: dict) -> SyncConflict:
    """Record (or bring up to date) the conflict of a new legacy id, changed at ``version`` /
    ``updated_at`` (its ChangeOrder): nothing else is written."""
    if row is None:
        row = SyncConflict(tenant_id=tenant.id, legacy_id=record.legacy_id)
        db.session.add(row)
    row.source = source
    row.kind = CONFLICT_KINDS[held.kind]
    row.identity_kind, row.identity_namespace, row.identity_value = held.kind, held.namespace, held.value
    row.account_id = held.account_id
    row.record = record.source_data or {}
    row.record_hash = record.record_hash
    row.legacy_version = version
    row.legacy_updated_at = updated_at
    row.status, row.resolved_at = "pending", None
    audit.record("legacy.pending_proof", account_id=held.account_id, **context, tenant=tenant.slug,
                 legacy_id=record.legacy_id, source=source, conflict=row.kind)
    return row


def conflict_state(row: SyncConflict) -> dict:
    """What the legacy system is told of a conflict: only what it sent (which of its identifiers
    is held), never whose account holds it."""
    return {"legacy_id": row.legacy_id, "status": row.status, "conflict": row.kind, "held": row.identity_kind,
            "source": row.source, "version": row.legacy_version, "updated_at": iso_time(row.legacy_updated_at),
            "since": iso_time(row.created_at)}


def withdraw_conflict(tenant: Tenant, legacy_id: str, *, actor: str, client_id: int | None = None) -> SyncConflict:
    """The legacy system deleted a legacy id still waiting for proof: the conflict is closed
    (``deleted``; the legacy id is never reused)."""
    row = find_conflict(tenant.id, legacy_id, lock=True)
    if row is None:
        raise NotFound("no such legacy account in this tenant")
    if row.status == "pending":
        row.status, row.resolved_at = "deleted", utcnow()
        audit.record("legacy.conflict_withdrawn", account_id=row.account_id, actor=actor, client_id=client_id,
                     tenant=tenant.slug, legacy_id=legacy_id)
    db.session.commit()
    return row


def list_conflicts(tenant: Tenant, status: str | None = "pending") -> list[SyncConflict]:
    query = db.select(SyncConflict).filter_by(tenant_id=tenant.id).order_by(SyncConflict.id)
    if status:
        query = query.filter_by(status=status)
    return list(db.session.scalars(query))
