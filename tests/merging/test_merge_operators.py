"""`tessera merges retry|cancel|list` through the app's own command line, on the suite's database
(SQLite, or PostgreSQL): a failed merge is queued again and the worker finishes it (its merge
locks taken again when it had passed ``locked``), a pending merge that changed nothing is
cancelled and never runs, and everything else is refused with the reason."""

from __future__ import annotations


import pytest
from sqlalchemy import text

from app.accounts.models import AuditEvent
from app.extensions import db
from app.merging.models import MergeLock, MergeRecord
from app.merging.requests import request_merge
from app.merging.run import run_merge
from app.security import utcnow
from tests.merging.test_merge import _deliver, _run_until_killed
from tests.cli import cli as _cli, cli_json as _json, cli_refused as _refused  # noqa: F401




def _sql(app, statement: str, **params):
    with app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


def _merge(app, merge_id: int) -> MergeRecord:
    with app.app_context():
        record = db.session.get(MergeRecord, merge_id)
        db.session.expunge_all()
        return record


def _locks(app) -> list[tuple[int, int]]:
    with app.app_context():
        return sorted((lock.account_id, lock.merge_id) for lock in db.session.scalars(db.select(MergeLock)))


def _audit(app, kind: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(db.session.scalars(db.select(AuditEvent).filter_by(kind=kind).order_by(AuditEvent.id)))
        db.session.expunge_all()
        return events


def _requested(app, survivor_id: int, absorbed_id: int) -> int:
    with app.app_context():
        return request_merge(survivor_id, absorbed_id, origin="operator", reason="same person").id


# --- retry ---------------------------------------------------------------------------------------

def test_a_merge_that_failed_at_its_lock_is_retried_once_the_account_is_active_again(app, factories):
    survivor, absorbed = factories.account(), factories.account()
    merge_id = _requested(app, survivor.id, absorbed.id)
    assert _cli(app, "users", "lock", str(absorbed.id), "--reason", "support call").exit_code == 0
    with app.app_context():
        assert run_merge(merge_id).status == "failed"

    assert f"merge {merge_id} would fail again: account {absorbed.id} is no longer active (locked)" in _refused(
        app, "merges", "retry", str(merge_id))
    assert _merge(app, merge_id).status == "failed"

    assert _cli(app, "users", "unlock", str(absorbed.id)).exit_code == 0
    retried = _json(app, "merges", "retry", str(merge_id))
    assert (retried["status"], retried["step"], retried["last_error"]) == ("pending", "requested", None)
    assert "failure" not in retried["report"]
    (retry,) = retried["report"]["retries"]
    assert retry["actor"] == "operator:cli" and retry["failure"]["reason"] == "absorbed_not_active"
    assert _locks(app) == []  # it had taken none: the locked step takes them when it runs
    (event,) = _audit(app, "merge.retried")
    assert (event.actor, event.account_id, event.details["merge_id"]) == ("operator:cli", survivor.id, merge_id)

    _deliver(app)  # the worker's round resumes it
    assert _merge(app, merge_id).status == "completed"
    assert f"merge {merge_id} is completed: only a failed merge can be retried" in _refused(
        app, "merges", "retry", str(merge_id))


def test_a_merge_that_failed_half_way_takes_its_locks_again_when_retried(app, factories, database_url):
    survivor, absorbed = factories.account(name="Survivor"), factories.account(email="absorbed@example.org")
    assert _run_until_killed(database_url, survivor.id, absorbed.id, "identities_moved").returncode != 0
    (merge_id,), = _sql_rows(app, "SELECT id FROM merge_records")
    # A change outside the services while the merge was down: its resume finds the account locked.
    _sql(app, "UPDATE accounts SET status = 'locked' WHERE id = :a", a=absorbed.id)
    _deliver(app)
    failed = _merge(app, merge_id)
    assert (failed.status, failed.step) == ("failed", "identities_moved") and _locks(app) == []

    _sql(app, "UPDATE accounts SET status = 'active' WHERE id = :a", a=absorbed.id)
    assert _json(app, "merges", "retry", str(merge_id))["status"] == "pending"
    # Half merged: both accounts are under the merge lock again until the worker finishes it.
    assert _locks(app) == sorted([(survivor.id, merge_id), (absorbed.id, merge_id)])
    assert "is pending: only a failed merge can be retried" in _refused(app, "merges", "retry", str(merge_id))

    _deliver(app)
    done = _merge(app, merge_id)
    assert (done.status, done.step) == ("completed", "completed") and _locks(app) == []
    assert [r["failure"]["at_step"] for r in done.report["retries"]] == ["identities_moved"]


def test_retry_is_refused_while_the_pair_is_merged_again_or_an_account_is_under_another_merge(app, factories):
    survivor, absorbed, third = factories.account(), factories.account(), factories.account()
    merge_id = _requested(app, survivor.id, absorbed.id)
    _sql(app, "UPDATE merge_records SET status = 'failed', step = 'locked' WHERE id = :m", m=merge_id)
    newer = _requested(app, survivor.id, absorbed.id)  # a failed pair is requested anew
    assert newer != merge_id
    assert f"merge {newer} of the same accounts is pending" in _refused(app, "merges", "retry", str(merge_id))

    assert _json(app, "merges", "cancel", str(newer), "--reason", "duplicate")["status"] == "cancelled"
    other = _requested(app, third.id, absorbed.id)
    with app.app_context():
        db.session.add(MergeLock(account_id=absorbed.id, merge_id=other))
        db.session.commit()
    assert f"account {absorbed.id} is under merge {other}" in _refused(app, "merges", "retry", str(merge_id))
    assert _merge(app, merge_id).status == "failed" and _locks(app) == [(absorbed.id, other)]


# --- cancel --------------------------------------------------------------------------------------

def test_a_pending_merge_is_cancelled_and_never_runs(app, factories):
    survivor, absorbed = factories.account(), factories.account()
    merge_id = _requested(app, survivor.id, absorbed.id)
    cancelled = _json(app, "merges", "cancel", str(merge_id), "--reason", "asked by mistake")
    assert (cancelled["status"], cancelled["step"]) == ("cancelled", "requested")
    assert cancelled["report"]["cancelled"]["reason"] == "asked by mistake"
    (event,) = _audit(app, "merge.cancelled")
    assert (event.actor, event.details["reason"]) == ("operator:cli", "asked by mistake")

    _deliver(app)  # the worker leaves it alone; so does a runner that read it before the cancel
    with app.app_context():
        assert run_merge(merge_id).status == "cancelled"
    with app.app_context():
        assert db.session.scalar(text("SELECT status FROM accounts WHERE id = :a"), {"a": absorbed.id}) == "active"
    assert f"merge {merge_id} is cancelled: only a pending merge can be cancelled" in _refused(
        app, "merges", "cancel", str(merge_id), "--reason", "again")
    assert f"merge {merge_id} is cancelled: only a failed merge can be retried" in _refused(
        app, "merges", "retry", str(merge_id))
    assert _requested(app, survivor.id, absorbed.id) != merge_id  # a cancelled pair is requested anew


def test_cancel_releases_the_locks_of_a_merge_waiting_after_its_locked_step(app, factories, database_url):
    survivor, absorbed = factories.account(), factories.account()
    assert _run_until_killed(database_url, survivor.id, absorbed.id, "locked").returncode != 0
    (merge_id,), = _sql_rows(app, "SELECT id FROM merge_records")
    assert "is running: only a pending merge can be cancelled" in _refused(
        app, "merges", "cancel", str(merge_id), "--reason", "stop")
    # A run that stopped on an error goes back to pending, its locks held.
    _sql(app, "UPDATE merge_records SET status = 'pending', locked_until = NULL WHERE id = :m", m=merge_id)
    assert len(_locks(app)) == 2
    assert _json(app, "merges", "cancel", str(merge_id), "--reason", "stop")["status"] == "cancelled"
    assert _locks(app) == []
    assert _cli(app, "users", "lock", str(absorbed.id), "--reason", "no longer busy").exit_code == 0


def test_cancel_refuses_a_merge_that_moved_data_or_that_a_worker_claimed(app, factories, database_url):
    survivor, absorbed = factories.account(), factories.account()
    assert _run_until_killed(database_url, survivor.id, absorbed.id, "identities_moved").returncode != 0
    (merge_id,), = _sql_rows(app, "SELECT id FROM merge_records")
    _sql(app, "UPDATE merge_records SET status = 'pending', locked_until = NULL WHERE id = :m", m=merge_id)
    assert "already changed the accounts (step identities_moved)" in _refused(
        app, "merges", "cancel", str(merge_id), "--reason", "stop")

    other_s, other_a = factories.account(), factories.account()
    claimed = _requested(app, other_s.id, other_a.id)
    _sql(app, "UPDATE merge_records SET locked_until = :t WHERE id = :m", t=utcnow().replace(year=2100), m=claimed)
    assert "claimed by a worker" in _refused(app, "merges", "cancel", str(claimed), "--reason", "stop")
    assert _merge(app, claimed).status == "pending"


@pytest.mark.parametrize("args, expected", [
    (("merges", "cancel", "999", "--reason", "x"), "no merge 999"),
    (("merges", "retry", "999"), "no merge 999"),
    (("merges", "show", "999"), "no merge 999"),
    (("merges", "list", "--account", "+14155559999"), "no account '+14155559999'"),
])
def test_unknown_merges_and_accounts(app, args, expected):
    assert expected in _refused(app, *args)


def test_cancel_needs_a_reason(app, factories):
    merge_id = _requested(app, factories.account().id, factories.account().id)
    assert _cli(app, "merges", "cancel", str(merge_id)).exit_code == 2
    assert "a reason is required" in _refused(app, "merges", "cancel", str(merge_id), "--reason", " ")
    assert _merge(app, merge_id).status == "pending"


# --- list ----------------------------------------------------------------------------------------

def test_list_filters_by_status_and_account(app, factories):
    a, b, c = factories.account(), factories.account(), factories.account()
    first = _requested(app, a.id, b.id)
    second = _requested(app, c.id, b.id)
    third = _requested(app, a.id, c.id)
    _json(app, "merges", "cancel", str(second), "--reason", "wrong pair")
    assert [m["id"] for m in _json(app, "merges", "list")] == [third, second, first]
    assert [m["id"] for m in _json(app, "merges", "list", "--account", a.phone)] == [third, first]
    assert [m["id"] for m in _json(app, "merges", "list", "--account", str(b.id), "--status", "pending")] == [first]
    assert [m["id"] for m in _json(app, "merges", "list", "--status", "cancelled")] == [second]
    line = _cli(app, "merges", "list", "--status", "cancelled").output
    assert line.startswith(f"merge {second}: {b.id} → {c.id}  cancelled (step requested)")


def _sql_rows(app, statement: str) -> list[tuple]:
    with app.app_context():
        rows = [tuple(r) for r in db.session.execute(text(statement)).all()]
        db.session.rollback()
        return rows
