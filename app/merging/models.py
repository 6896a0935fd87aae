"""MergeRecord (a merge's request, state machine step and result) and MergeLock (an account under a running merge)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.security import utcnow

#: The steps of a merge, in order. ``step`` on a MergeRecord is the last one committed.
STEPS = ("requested", "locked", "identities_moved", "data_unioned", "subjects_aliased", "access_revoked",
         "clients_notified", "completed")

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
#: The statuses of a merge a runner may (still) take up.
RUNNABLE = ("pending", "running")
#: A merge in these is over: a new request of the same pair starts a new merge.
ENDED_UNDONE = ("failed", "cancelled")


class MergeRecord(db.Model):
    """One merge of ``absorbed`` into ``survivor``. Each step commits together with the new
    ``step`` value, so a crash resumes at the next step and never leaves half a step."""

    __tablename__ = "merge_records"
    __table_args__ = (Index("ix_merge_records_pair", "survivor_id", "absorbed_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    absorbed_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: user | phone_binding | operator | import
    origin: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(500))
    #: Re-grant to the survivor the client consents it lacks (only when the user approved it).
    regrant_consents: Mapped[bool] = mapped_column(default=False)
    step: Mapped[str] = mapped_column(String(32), default="requested")
    #: ``STATUSES``: pending (waiting for its lock or a worker) | running | completed | failed
    #: (an account was no longer active; an operator may retry it) | cancelled (by an operator,
    #: before it changed anything)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: What the merge changed, filled step by step (for the audit and the operators).
    report: Mapped[dict] = mapped_column(JSON, default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    #: A worker running the merge holds it until then; a crashed worker's merge resumes after it.
    locked_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class MergeLock(db.Model):
    """The merge lock: one row per account under a merge. The primary key makes taking the lock
    atomic, so two merges touching the same account never run at once."""

    __tablename__ = "merge_locks"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    merge_id: Mapped[int] = mapped_column(ForeignKey("merge_records.id", ondelete="CASCADE"), index=True)
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
