"""The durable outbox: retried with backoff while the receiver is down; at least once, with the
same jti and body, when the worker is killed mid-delivery (the receiver de-duplicates by jti);
exactly once — counted raw at the receiver — when two workers claim and deliver at once."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from app.events.models import DeliveryAttempt, OutboxEvent
from app.events.outbox import enqueue
from app.worker import run_once
from app.extensions import db
from app.security import new_secret, utcnow


def _event(client_url: str) -> str:
    jti = new_secret(16)
    from joserfc import jwt
    from joserfc.jwk import OctKey

    token = jwt.encode({"alg": "HS256"}, {"jti": jti}, OctKey.import_key("k" * 32))
    enqueue(kind="backchannel_logout", client_id=None, url=client_url, body=f"logout_token={token}",
            content_type="application/x-www-form-urlencoded", jti=jti)
    db.session.commit()
    return jti


def _row(jti):
    db.session.expire_all()
    return db.session.scalar(db.select(OutboxEvent).filter_by(jti=jti))


def test_retried_with_backoff_until_acknowledged(ctx, receiver):
    jti = _event(receiver.url + "/bc")
    receiver.status = 503
    assert run_once() == 1
    row = _row(jti)
    assert row.status == "pending" and row.attempts == 1 and "HTTP 503" in row.last_error
    assert row.next_attempt_at > utcnow()  # backoff: not due again right away
    assert run_once() == 0

    receiver.status = 200
    row.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert run_once() == 1
    row = _row(jti)
    assert row.status == "delivered" and row.attempts == 2 and row.delivered_at is not None
    history = db.session.scalars(db.select(DeliveryAttempt).filter_by(event_id=row.id).order_by(DeliveryAttempt.id)).all()
    assert [h.status_code for h in history] == [503, 200]
    assert list(receiver.processed) == [jti]


def test_unreachable_receiver_is_retried(ctx):
    jti = _event("http://127.0.0.1:9/nothing-listens-here")
    run_once()
    row = _row(jti)
    assert row.status == "pending" and row.attempts == 1 and row.last_error


def test_private_addresses_refused_unless_allowed(app, ctx, receiver):
    app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = False
    try:
        jti = _event(receiver.url + "/bc")
        run_once()
        assert "non-public address" in _row(jti).last_error and not receiver.requests
    finally:
        app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = True


def _worker(database_url):
    env = dict(os.environ, TESSERA_DATABASE_URL=database_url, TESSERA_ALLOW_PRIVATE_OUTBOUND="1",
               TESSERA_OUTBOX_LEASE="2", TESSERA_SECRET_KEY="test-secret-key-that-is-long-enough-0123456789")
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--interval", "0.2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_worker_killed_mid_delivery(ctx, database_url, receiver):
    jti = _event(receiver.url + "/bc")
    receiver.delay = 3  # the receiver is slow: the worker is killed while it waits for the answer
    worker = _worker(database_url)
    try:
        deadline = time.time() + 20
        while not receiver.requests and time.time() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "the worker never delivered"
        os.killpg(worker.pid, signal.SIGKILL)  # a real kill -9, mid-request
        worker.wait()
        assert _row(jti).status == "pending"

        receiver.delay = 0
        worker = _worker(database_url)  # a new worker picks the event up once the lease runs out
        deadline = time.time() + 30
        while _row(jti).status != "delivered" and time.time() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    row = _row(jti)
    assert row.status == "delivered"
    # At least once: it was sent again, the same message (same jti and body), so that the
    # receiver can de-duplicate; and never again once acknowledged.
    sent = receiver.deliveries(jti)
    assert sent >= 2 and len({r["token"] for r in receiver.requests}) == 1
    assert run_once() == 0 and receiver.deliveries(jti) == sent


def test_a_refused_security_event_is_not_retried(ctx, receiver):
    """RFC 8935 2.3: a 400 from the receiver is a final refusal of that SET."""
    jti = new_secret(16)
    from joserfc import jwt
    from joserfc.jwk import OctKey

    token = jwt.encode({"alg": "HS256"}, {"jti": jti}, OctKey.import_key("k" * 32))
    enqueue(kind="set", client_id=None, url=receiver.url + "/events", body=token,
            content_type="application/secevent+jwt", jti=jti)
    db.session.commit()
    receiver.status = 400
    run_once()
    row = _row(jti)
    assert row.status == "rejected" and row.attempts == 1
    row.next_attempt_at = utcnow() - timedelta(seconds=5)
    db.session.commit()
    assert run_once() == 0


@pytest.mark.skipif(not (os.environ.get("TESSERA_TEST_DATABASE_URL") or "").startswith("postgresql"),
                    reason="two workers claiming at once (FOR UPDATE SKIP LOCKED) are tested on PostgreSQL")
def test_two_workers_claiming_at_once_deliver_each_event_exactly_once(app, ctx, receiver):
    jtis = [_event(receiver.url + "/bc") for _ in range(20)]
    # The first two deliveries are answered only when both are in flight: the two workers (each
    # delivers one event at a time) provably deliver at the same time.
    receiver.hold_first(2, timeout=120)
    start, errors, rounds = threading.Barrier(2, timeout=120), [], {}

    def worker(name):
        with app.app_context():
            try:
                start.wait()
                rounds[name] = 0
                while n := run_once(limit=5):  # the worker's real round: claim (SKIP LOCKED), deliver
                    rounds[name] += n
            except Exception as exc:  # reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(name,), daemon=True) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker is stuck"
    assert not errors, errors
    assert not receiver.gate.broken, "the two workers never delivered at the same time"
    assert rounds["one"] and rounds["two"] and rounds["one"] + rounds["two"] == len(jtis)
    # Exactly once, counted raw at the receiver (no de-duplication by jti involved).
    assert len(receiver.requests) == len(jtis) and all(receiver.deliveries(j) == 1 for j in jtis)
    db.session.expire_all()
    assert {(e.status, e.attempts) for e in db.session.scalars(db.select(OutboxEvent))} == {("delivered", 1)}


def test_operators_list_failing_deliveries_and_retry_them_now(app, ctx, receiver):
    """`tessera deliveries list --status failing` and `retry`: a failing event is due at once
    (audited); a delivered one is final."""
    import json

    from app.accounts.models import AuditEvent

    jti = _event(receiver.url + "/bc")
    receiver.status = 503
    assert run_once() == 1
    runner = app.test_cli_runner()
    failing = json.loads(runner.invoke(args=["deliveries", "list", "--status", "failing", "--json"]).output)
    assert [(d["jti"], d["failing"]) for d in failing] == [(jti, True)] and "HTTP 503" in failing[0]["last_error"]
    assert "failing" in runner.invoke(args=["deliveries", "list"]).output
    assert run_once() == 0  # backoff

    result = runner.invoke(args=["deliveries", "retry", str(failing[0]["id"])])
    assert result.exit_code == 0 and "1 event(s) due now" in result.output
    receiver.status = 200
    assert run_once() == 1 and _row(jti).status == "delivered"
    assert db.session.scalar(db.select(AuditEvent.actor).filter_by(kind="deliveries.retried")) == "operator:cli"
    final = runner.invoke(args=["deliveries", "retry", str(failing[0]["id"]), "--json"])
    assert final.exit_code == 1 and "delivered: that is final" in json.loads(final.output)["error"]
