"""Operators and the outbox (``tessera deliveries …``): what was sent to which client, what is
failing, and retrying now — the kernel's outbox services (app.events.outbox) with clients named by
their public ``client_id`` and every retry audited."""

from __future__ import annotations

from app import audit
from app.events.models import OutboxEvent
from app.events.outbox import find_deliveries, retry_now
from app.extensions import db
from app.oidc.clients import load_client_row
from app.oidc.models import Client

OPERATOR = "operator:cli"


def list_deliveries(client_id: str | None = None, status: str | None = None) -> list[dict]:
    """The 200 newest outbox events (of a client, of a status — ``failing``: pending after a
    failed attempt), as dicts."""
    pk = load_client_row(client_id).id if client_id else None
    return [delivery_to_dict(e) for e in find_deliveries(client_pk=pk, status=status)]


def retry(event_id: int | None = None, client_id: str | None = None, actor: str = OPERATOR) -> list[dict]:
    """Make one pending event, or every pending event of a client, due now (the worker sends it
    on its next round); audited. Delivered, expired and rejected events are final."""
    client = load_client_row(client_id) if client_id else None
    events = retry_now(event_id=event_id, client_pk=client.id if client else None)
    audit.record("deliveries.retried", actor=actor, client_id=client.id if client else events[0].client_id,
                 events=[e.id for e in events])
    db.session.commit()
    return [delivery_to_dict(e) for e in events]


def delivery_to_dict(event: OutboxEvent) -> dict:
    client = db.session.scalar(db.select(Client.client_id).filter_by(id=event.client_id)) if event.client_id else None
    return {"id": event.id, "kind": event.kind, "client": client, "url": event.url, "status": event.status,
            "failing": event.status == "pending" and event.attempts > 0, "attempts": event.attempts,
            "last_error": event.last_error, "next_attempt_at": event.next_attempt_at, "reference": event.reference,
            "jti": event.jti, "created_at": event.created_at, "delivered_at": event.delivered_at,
            "expires_at": event.expires_at}
