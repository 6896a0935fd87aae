"""The outbox: rows written in the transaction of the change that caused them, delivered by the
worker (app/worker.py) with retries and backoff. A kernel module: it knows URLs and bodies, not
who asked for them."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, update

from app.errors import Conflict, InvalidInput, NotFound
from app.extensions import db
from app.events.models import DeliveryAttempt, OutboxEvent
from app.net import OutboundError, fetch
from app.security import utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600


def enqueue(*, kind: str, client_id: int | None, url: str, body: str, content_type: str, jti: str,
            expires_at=None, reference: str | None = None) -> OutboxEvent:
    """Add a message to the outbox. The caller commits, together with the change that caused it."""
    event = OutboxEvent(kind=kind, client_id=client_id, url=url, body=body, content_type=content_type, jti=jti,
                        expires_at=expires_at, reference=reference)
    db.session.add(event)
    return event


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: ~1 s, 2 s, 4 s … capped at an hour."""
    base = min(2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def claim_due(limit: int = 20) -> list[OutboxEvent]:
    """Claim due events for this worker. Many workers may run: on PostgreSQL rows are selected
    with FOR UPDATE SKIP LOCKED; everywhere a claim is a conditional UPDATE of the lease, so a
    row is held by one worker at a time, and a crashed worker's lease simply runs out."""
    now = utcnow()
    query = (
        db.select(OutboxEvent.id)
        .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= now,
               or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until <= now))
        .order_by(OutboxEvent.next_attempt_at)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(db.session.scalars(query))
    claimed = []
    for event_id in ids:
        won = db.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id, OutboxEvent.status == "pending",
                   or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until <= now))
            .values(locked_until=now + timedelta(seconds=current_app.config["TESSERA_OUTBOX_LEASE"]))
        ).rowcount
        if won:
            claimed.append(event_id)
    db.session.commit()
    return [db.session.get(OutboxEvent, i) for i in claimed]


def deliver(event: OutboxEvent) -> bool:
    """POST the event once; record the attempt; schedule a retry unless the receiver said 2xx."""
    if event.expires_at is not None and event.expires_at <= utcnow():
        event.status, event.locked_until = "expired", None
        event.last_error = (event.last_error or "") [:400] + " (expired before it was acknowledged)"
        db.session.commit()
        return False
    status_code, error = None, None
    try:
        response = fetch("POST", event.url, data=event.body,
                         headers={"Content-Type": event.content_type, "Accept": "application/json"})
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:200]}"
    except OutboundError as exc:
        error = str(exc)[:500]
    now = utcnow()
    event.attempts += 1
    db.session.add(DeliveryAttempt(event_id=event.id, attempted_at=now, status_code=status_code, error=error))
    if error is None:
        event.status, event.delivered_at, event.last_error = "delivered", now, None
    elif event.kind == "set" and status_code == 400:
        # RFC 8935 2.3: the receiver refused this SET for good; sending it again cannot help.
        event.status, event.last_error = "rejected", error
    else:
        event.last_error = error
        event.next_attempt_at = now + backoff(event.attempts)
    event.locked_until = None
    db.session.commit()
    if error:
        log.warning("delivery of event %s to %s failed (attempt %s): %s", event.jti, event.url, event.attempts, error)
    return error is None


DELIVERY_FILTERS = ("pending", "failing", "delivered", "expired", "rejected")


def find_deliveries(*, client_pk: int | None = None, status: str | None = None, limit: int = 200) -> list[OutboxEvent]:
    """Outbox events, newest first: of one client (its primary key), of one status — or
    ``failing``: pending events whose last attempt failed (attempts > 0)."""
    if status is not None and status not in DELIVERY_FILTERS:
        raise InvalidInput(f"unknown status {status!r}: one of {', '.join(DELIVERY_FILTERS)}")
    query = db.select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
    if client_pk is not None:
        query = query.where(OutboxEvent.client_id == client_pk)
    if status == "failing":
        query = query.where(OutboxEvent.status == "pending", OutboxEvent.attempts > 0)
    elif status is not None:
        query = query.where(OutboxEvent.status == status)
    return list(db.session.scalars(query))


def retry_now(*, event_id: int | None = None, client_pk: int | None = None) -> list[OutboxEvent]:
    """Make pending events due now (one event, or every pending event of a client); the caller
    commits. A delivered, expired or rejected event is final: retrying it is refused."""
    if (event_id is None) == (client_pk is None):
        raise InvalidInput("give an event id or a client, not both")
    if event_id is not None:
        event = db.session.get(OutboxEvent, event_id)
        if event is None:
            raise NotFound(f"no outbox event {event_id}")
        if event.status != "pending":
            raise Conflict(f"event {event_id} is {event.status}: that is final, it is not sent again")
        events = [event]
    else:
        events = list(db.session.scalars(db.select(OutboxEvent).filter_by(client_id=client_pk, status="pending")))
    now = utcnow()
    for event in events:
        event.next_attempt_at = now
    return events


def delivery_counters() -> dict[tuple[str, str], int]:
    """(kind, status) → number of outbox events, for /metrics."""
    rows = db.session.execute(
        db.select(OutboxEvent.kind, OutboxEvent.status, db.func.count()).group_by(OutboxEvent.kind, OutboxEvent.status)
    ).all()
    return {(kind, status): count for kind, status, count in rows}


def backlog_by_client() -> dict[int | None, tuple[int, int]]:
    """Client primary key (None: events for no client) → (pending events, pending events whose last
    delivery attempt failed), for /metrics."""
    failing = db.func.count(OutboxEvent.last_error)  # counts the rows whose last attempt left an error
    rows = db.session.execute(
        db.select(OutboxEvent.client_id, db.func.count(), failing)
        .where(OutboxEvent.status == "pending").group_by(OutboxEvent.client_id)
    ).all()
    return {client_id: (pending, failed) for client_id, pending, failed in rows}
