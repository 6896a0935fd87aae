from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
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
