"""Running merges: the state machine that drives a merge through its steps (``app.merging.steps``),
and the worker's claiming and resuming of merges whose runner died.

Each step commits in one transaction together with the record's new ``step``; a crash (even
``kill -9``) between steps resumes at the next step — ``tessera worker`` picks up merges whose
lease ran out — and a crash inside a step rolls that step back whole. A merge that meets an
account no longer active fails with the reason (``MergeRefused``) and releases its locks.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, update

from app import audit
from app.errors import NotFound
from app.extensions import db
from app.merging.models import RUNNABLE, STEPS, MergeLock, MergeRecord
from app.merging.requests import request_merge
from app.merging.steps import STEP_FUNCTIONS, MergeRefused, check_still_mergeable, lock_rows
from app.security import utcnow

#: A test hook for the crash test: kill the process right after this step commits.
FAULT_ENV = "TESSERA_FAULT_KILL_AFTER_MERGE_STEP"


def _fail(merge_id: int, step: str, refusal: MergeRefused) -> MergeRecord:
    """Record the refusal on the merge (status "failed", its reason) and release its locks."""
    db.session.rollback()
    record = db.session.get(MergeRecord, merge_id)
    db.session.execute(db.delete(MergeLock).where(MergeLock.merge_id == record.id))
    record.status, record.locked_until = "failed", None
    record.last_error = f"{refusal.reason}: {refusal.detail}"[:2000]
    record.report = {**record.report, "failure": {"reason": refusal.reason, "detail": refusal.detail, "at_step": step}}
    audit.record("merge.failed", account_id=record.survivor_id, actor=record.origin, merge_id=record.id,
                 absorbed_id=record.absorbed_id, reason=refusal.reason, at_step=step)
    db.session.commit()
    return record


def run_merge(merge_id: int) -> MergeRecord:
    """Run (or resume) a merge to completion. Returns the record; its status is "pending" when
    it waits for a lock held by another merge, "failed" (with the reason in ``last_error`` and
    ``report["failure"]``) when an account it names is no longer active; a merge completed, failed
    or cancelled before is returned as it is."""
    if db.session.get(MergeRecord, merge_id) is None:
        raise NotFound(f"no merge {merge_id}")
    # A conditional UPDATE: a merge cancelled (app.merging.operators), completed or failed
    # meanwhile is never started again.
    started = db.session.execute(
        update(MergeRecord).where(MergeRecord.id == merge_id, MergeRecord.status.in_(RUNNABLE))
        .values(status="running", attempts=MergeRecord.attempts + 1,
                locked_until=utcnow() + timedelta(seconds=current_app.config["TESSERA_MERGE_LEASE"]))
    ).rowcount
    db.session.commit()
    record = db.session.get(MergeRecord, merge_id, populate_existing=True)
    if not started:
        return record
    if record.step not in ("requested", "completed"):
        # A resume holding the merge lock: every status change takes that lock (app.accounts.
        # locking), so both accounts must still be active; if not (a change outside the
        # services), the merge stops here, failed, for an operator to look at.
        try:
            check_still_mergeable(*lock_rows(record))
            db.session.rollback()  # the row locks only: the steps take them again
        except MergeRefused as refusal:
            return _fail(merge_id, record.step, refusal)
        record = db.session.get(MergeRecord, merge_id)
    while record.step != "completed":
        step = STEPS[STEPS.index(record.step) + 1]
        try:
            done = STEP_FUNCTIONS[step](record)
        except MergeRefused as refusal:
            return _fail(merge_id, step, refusal)
        except Exception as exc:
            db.session.rollback()
            record = db.session.get(MergeRecord, merge_id)
            record.last_error = f"{step}: {exc}"[:2000]
            record.status, record.locked_until = "pending", None
            db.session.commit()
            raise
        if not done:
            db.session.rollback()
            record = db.session.get(MergeRecord, merge_id)
            record.status, record.locked_until = "pending", None
            db.session.commit()
            return record
        record.step = step
        db.session.commit()
        if os.environ.get(FAULT_ENV) == step:
            os.kill(os.getpid(), signal.SIGKILL)  # crash test: a real kill -9 right after this step
    return record


def merge_accounts(survivor_id: int, absorbed_id: int, **kwargs) -> MergeRecord:
    """Request and run a merge now (the worker resumes it if this process dies)."""
    record = request_merge(survivor_id, absorbed_id, **kwargs)
    if record.status == "completed":
        return record
    return run_merge(record.id)


def claim_due_merges(limit: int = 10) -> list[int]:
    """Claim merges that are pending or whose runner died (lease over) for this worker. Many
    workers may run: on PostgreSQL the rows are selected with FOR UPDATE SKIP LOCKED (two workers
    claiming at once take different merges); everywhere a claim is a conditional UPDATE of the
    lease, so a merge is run by one worker at a time, and never again once completed or failed."""
    now = utcnow()
    due = (MergeRecord.status.in_(RUNNABLE),
           or_(MergeRecord.locked_until.is_(None), MergeRecord.locked_until <= now))
    query = db.select(MergeRecord.id).where(*due).order_by(MergeRecord.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for merge_id in list(db.session.scalars(query)):
        won = db.session.execute(
            update(MergeRecord).where(MergeRecord.id == merge_id, *due)
            .values(locked_until=now + timedelta(seconds=current_app.config["TESSERA_MERGE_LEASE"]))
        ).rowcount
        if won:
            claimed.append(merge_id)
    db.session.commit()
    return claimed


def resume_due_merges(limit: int = 10) -> int:
    """Resume merges that are pending or whose runner died (lease over). Run by the worker.
    Returns the number of merges it claimed."""
    claimed = claim_due_merges(limit)
    for merge_id in claimed:
        try:
            run_merge(merge_id)
        except Exception:  # recorded on the merge; the next round retries
            current_app.logger.exception("merge %s failed", merge_id)
    return len(claimed)
