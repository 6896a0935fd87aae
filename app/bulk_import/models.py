"""Legacy migration state: LegacyMapping (a legacy id of a tenant and its account), ImportJob, ImportConflict, AccountAttributes (a tenant's custom attributes of an account), SyncConflict (a link waiting for the person's proof)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.dbutil import identifier
from app.extensions import db
from app.security import utcnow


class LegacyMapping(db.Model):
    """(tenant, legacy id) → account, kept forever (also after merges: follow merged_into)."""

    __tablename__ = "legacy_mappings"
    __table_args__ = (UniqueConstraint("tenant_id", "legacy_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    legacy_id: Mapped[str] = mapped_column(identifier(128))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: import | sync | lazy
    source: Mapped[str] = mapped_column(String(16))
    #: The legacy record created the hub account (True), or was linked to one that existed (False:
    #: the person's, another tenant's, or another legacy record's). A tenant's legacy system
    #: changes the password, phone, email and username only of an account its record created
    #: (docs/flows/sync-and-lazy-migration.md). False again once a merge moved the mapping to
    #: another account.
    created_account: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: Ordering of changes from the legacy system: a stale change never overwrites a newer one.
    legacy_updated_at: Mapped[datetime | None] = mapped_column()
    legacy_version: Mapped[int | None] = mapped_column(BigInteger)
    #: SHA-256 of the last applied record: re-running the same file changes nothing.
    record_hash: Mapped[str | None] = mapped_column(String(64))
    #: The legacy system deleted the record (sync API); the mapping stays for foreign keys.
    deleted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ImportJob(db.Model):
    """One run (or dry run) of one file, or one shard of it. ``checkpoint`` is where a resumed
    run goes on after a crash: everything before it is committed."""

    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_identity", "tenant_id", "file_sha256", "mode", "shard_index", "shard_count"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    file_name: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64))
    #: plan (dry run) | run
    mode: Mapped[str] = mapped_column(String(8))
    shard_index: Mapped[int] = mapped_column(default=0)
    shard_count: Mapped[int] = mapped_column(default=1)
    #: The conflict policies in force, per conflict kind.
    policies: Mapped[dict] = mapped_column(JSON, default=dict)
    #: running | completed | failed
    status: Mapped[str] = mapped_column(String(16), default="running")
    #: Byte offset in the file (and line number) up to which everything is committed.
    checkpoint_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint_line: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Counters: records read / created / updated / unchanged / merged / skipped / errors / conflicts.
    counters: Mapped[dict] = mapped_column(JSON, default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class ImportConflict(db.Model):
    """One conflict found by a plan or a run: which records, which rule, what was done."""

    __tablename__ = "import_conflicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"), index=True)
    #: same_phone | duplicate_username | shared_email | same_upstream | malformed_phone | malformed_email | invalid_record
    kind: Mapped[str] = mapped_column(String(32))
    #: The policy applied: fail | skip | overwrite | link | merge
    policy: Mapped[str] = mapped_column(String(16))
    line: Mapped[int | None] = mapped_column(BigInteger)
    legacy_id: Mapped[str | None] = mapped_column(String(128))
    #: The other side: other legacy ids / an existing account id.
    other: Mapped[dict] = mapped_column(JSON, default=dict)
    detail: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncConflict(db.Model):
    """A new legacy id (sync PUT or lazy migration) naming an identifier held by a hub account that
    its tenant's legacy system did not create. Nothing is linked or written: the legacy system's
    flags are no proof that the two are one person. The row waits for the person's proof — a
    login to the account holding the identifier at a site of the tenant (app.bulk_import.links) —
    and operators list it (``tessera sync conflicts TENANT``)."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (UniqueConstraint("tenant_id", "legacy_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    legacy_id: Mapped[str] = mapped_column(identifier(128))
    #: sync | lazy
    source: Mapped[str] = mapped_column(String(16))
    #: The import's conflict kinds: same_phone | shared_email | duplicate_username | same_upstream
    kind: Mapped[str] = mapped_column(String(32))
    #: The identifier held (as in ``identities``): kind, namespace, value.
    identity_kind: Mapped[str] = mapped_column(identifier(16))
    identity_namespace: Mapped[str] = mapped_column(identifier(64), default="")
    identity_value: Mapped[str] = mapped_column(identifier(320))
    #: The account that held it when the conflict was recorded (internal: never shown to the tenant).
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: The change as the legacy system sent it (a sync PUT body without its password fields: a
    #: tenant never sets the password of an account it did not create), applied on proof.
    record: Mapped[dict] = mapped_column(JSON, default=dict)
    record_hash: Mapped[str | None] = mapped_column(String(64))
    legacy_version: Mapped[int | None] = mapped_column(BigInteger)
    legacy_updated_at: Mapped[datetime | None] = mapped_column()
    #: pending | linked (the person proved it) | deleted (by the legacy system; the legacy id is
    #: never reused) | withdrawn (a later change no longer names a held identifier, or the legacy
    #: id was mapped otherwise)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()


class AccountAttributes(db.Model):
    """Tenant-scoped extra attributes of an account (from a legacy system, or written by the
    tenant's partners)."""

    __tablename__ = "account_attributes"
    __table_args__ = (UniqueConstraint("account_id", "tenant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))  # uq_account_attributes_account_id leads with it
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
