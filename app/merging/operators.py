"""Operators acting on merges (``tessera merges …``, later the admin API): find them, show one with
the delivery of its notifications, retry a failed merge, cancel a pending one.

Rules:

- ``retry_merge`` puts a **failed** merge back in the queue (status ``pending``): ``tessera worker``
  runs it on its next round (``run.resume_due_merges``), from the step it had reached. It is
  refused while both accounts are not active again (it would fail the same way), while another
  merge of the same pair is open, and while another merge holds one of its accounts. A merge that
  failed after its ``locked`` step had released its merge locks: the retry takes them again, so
  nothing writes to the half-merged accounts before the worker resumes it.
- ``cancel_merge`` ends a **pending** merge that changed nothing yet (step ``requested``, or
  ``locked``: only its locks, released here). A running, claimed, completed, failed or
  cancelled merge is refused, as is one past ``locked`` (data moved: it can only be finished).
- Both take the locks a run takes, in its order — the two accounts' row locks in id order
  (``steps.lock_rows``), then the merge's row — and change the status by a conditional UPDATE,
  as a runner starts a merge (``run.run_merge``): a cancel and a run never both win.
- Every change is audited with the caller's actor, on the survivor.
"""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from app import audit
from app.accounts.models import Account
from app.errors import Conflict, InvalidInput, NotFound
from app.events.models import OutboxEvent
from app.extensions import db
from app.merging.models import ENDED_UNDONE, STATUSES, MergeLock, MergeRecord
from app.merging.requests import merge_to_dict
from app.merging.steps import MergeRefused, check_still_mergeable, lock_rows
from app.security import utcnow

#: The most merges one list returns.
LIST_LIMIT = 200
#: The steps a pending merge may be cancelled at: nothing but its locks was written yet.
CANCELLABLE_STEPS = ("requested", "locked")


def get_merge(merge_id: int) -> MergeRecord:
    record = db.session.get(MergeRecord, merge_id)
    if record is None:
        raise NotFound(f"no merge {merge_id}")
    return record


def merge_details(record: MergeRecord) -> dict:
    """``merge_to_dict`` and the delivery state of the merge's notifications to clients."""
    data = merge_to_dict(record)
    events = db.session.scalars(db.select(OutboxEvent).filter_by(reference=f"merge-{record.id}")
                                .order_by(OutboxEvent.id))
    data["deliveries"] = [
        {"jti": e.jti, "url": e.url, "status": e.status, "attempts": e.attempts, "last_error": e.last_error,
         "delivered_at": e.delivered_at}
        for e in events
    ]
    return data


def list_merges(*, status: str | None = None, account_id: int | None = None,
                limit: int = LIST_LIMIT) -> list[MergeRecord]:
    """The newest merges first, at most ``limit``: of one status, and/or those an account took part
    in (as survivor or absorbed)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    if not 1 <= limit <= LIST_LIMIT:
        raise InvalidInput(f"the limit must be between 1 and {LIST_LIMIT}")
    query = db.select(MergeRecord).order_by(MergeRecord.id.desc()).limit(limit)
    if status is not None:
        query = query.where(MergeRecord.status == status)
    if account_id is not None:
        query = query.where(or_(MergeRecord.survivor_id == account_id, MergeRecord.absorbed_id == account_id))
    return list(db.session.scalars(query))


def _locked(merge_id: int) -> tuple[MergeRecord, Account, Account]:
    """The merge under the locks a run takes — both accounts' rows (in id order), then its own row
    — with the two accounts as read under their locks."""
    survivor, absorbed = lock_rows(get_merge(merge_id))
    for_update = db.session.get_bind().dialect.name == "postgresql"
    record = db.session.get(MergeRecord, merge_id, with_for_update=for_update or None, populate_existing=True)
    return record, survivor, absorbed


def _refuse(message: str) -> Conflict:
    """The refusal, after releasing the locks taken."""
    db.session.rollback()
    return Conflict(message)


def retry_merge(merge_id: int, *, actor: str) -> MergeRecord:
    """Queue a failed merge again (status ``pending``, from the step it reached); the worker runs
    it. Audited as ``merge.retried`` with the failure it had (kept in ``report.retries``)."""
    status = get_merge(merge_id).status
    if status != "failed":
        raise Conflict(f"merge {merge_id} is {status}: only a failed merge can be retried")
    record, survivor, absorbed = _locked(merge_id)
    if record.status != "failed":
        raise _refuse(f"merge {merge_id} is {record.status}: only a failed merge can be retried")
    other = db.session.scalar(
        db.select(MergeRecord).filter_by(survivor_id=record.survivor_id, absorbed_id=record.absorbed_id)
        .where(MergeRecord.id != record.id, MergeRecord.status.not_in(ENDED_UNDONE)).limit(1))
    if other is not None:
        raise _refuse(f"merge {other.id} of the same accounts is {other.status}: follow that one instead")
    try:
        check_still_mergeable(survivor, absorbed)
    except MergeRefused as refusal:
        raise _refuse(f"merge {merge_id} would fail again: {refusal.detail}") from None
    if record.step != "requested":
        # Past ``locked``, a run resumes holding the merge locks; the failure released them.
        for account_id in (record.survivor_id, record.absorbed_id):
            held = db.session.get(MergeLock, account_id)
            if held is not None and held.merge_id != record.id:
                raise _refuse(f"account {account_id} is under merge {held.merge_id}: retry once that one is over")
            if held is None:
                db.session.add(MergeLock(account_id=account_id, merge_id=record.id))
    report = dict(record.report or {})
    failure = report.pop("failure", None)
    report["retries"] = [*report.get("retries", []), {"at": utcnow().isoformat(), "actor": actor,
                                                      "failure": failure, "last_error": record.last_error}]
    audit.record("merge.retried", account_id=record.survivor_id, actor=actor, merge_id=record.id,
                 absorbed_id=record.absorbed_id, step=record.step, previous_error=record.last_error)
    record.report, record.status, record.locked_until, record.last_error = report, "pending", None, None
    _commit(merge_id)
    return record


def cancel_merge(merge_id: int, *, actor: str, reason: str) -> MergeRecord:
    """Cancel a pending merge that changed nothing yet (status ``cancelled``, its locks released).
    Audited as ``merge.cancelled`` with the reason (kept in ``report.cancelled``)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required")
    _check_cancellable(get_merge(merge_id))
    record, _, _ = _locked(merge_id)
    try:
        _check_cancellable(record)
    except Conflict:
        db.session.rollback()
        raise
    now = utcnow()
    # The runner's start is a conditional UPDATE too (run.run_merge): one of the two wins.
    won = db.session.execute(
        update(MergeRecord).where(
            MergeRecord.id == merge_id, MergeRecord.status == "pending", MergeRecord.step.in_(CANCELLABLE_STEPS),
            or_(MergeRecord.locked_until.is_(None), MergeRecord.locked_until <= now))
        .values(status="cancelled", locked_until=None)
    ).rowcount
    if not won:
        raise _refuse(f"merge {merge_id} was taken up by a runner meanwhile: look at it again")
    db.session.execute(db.delete(MergeLock).where(MergeLock.merge_id == merge_id))
    record = db.session.get(MergeRecord, merge_id, populate_existing=True)
    record.report = {**(record.report or {}), "cancelled": {"at": now.isoformat(), "actor": actor, "reason": reason}}
    audit.record("merge.cancelled", account_id=record.survivor_id, actor=actor, merge_id=record.id,
                 absorbed_id=record.absorbed_id, step=record.step, reason=reason)
    _commit(merge_id)
    return record


def _check_cancellable(record: MergeRecord) -> None:
    if record.status != "pending":
        raise Conflict(f"merge {record.id} is {record.status}: only a pending merge can be cancelled")
    if record.locked_until is not None and record.locked_until > utcnow():
        raise Conflict(f"merge {record.id} was claimed by a worker that is starting it: look at it again")
    if record.step not in CANCELLABLE_STEPS:
        raise Conflict(f"merge {record.id} already changed the accounts (step {record.step}): a cancel would "
                       "leave them half merged; the worker finishes it")


def _commit(merge_id: int) -> None:
    try:
        db.session.commit()
    except SQLAlchemyError:  # a concurrent change of the same rows (a lock taken meanwhile)
        db.session.rollback()
        raise Conflict(f"merge {merge_id} changed meanwhile: look at it again") from None
