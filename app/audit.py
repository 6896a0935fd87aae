"""Audit events: every identity change, login success/failure, consent change and operator action,
added to the transaction of the change (a models-layer module: every layer above may record)."""

from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import insert

from app.accounts.models import AuditEvent
from app.extensions import db
from app.metrics import count_audited
from app.security import utcnow


def record(kind: str, *, account_id: int | None = None, actor: str | None = None, client_id: int | None = None,
           **details) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits with its change); logins
    and their failures are counted for /metrics by method (app.metrics)."""
    event = AuditEvent(kind=kind, account_id=account_id, actor=actor, client_id=client_id, details=details)
    if has_request_context():
        event.ip_address = request.remote_addr
        event.user_agent = (request.headers.get("User-Agent") or "")[:300]
    db.session.add(event)
    count_audited(kind, details)
    return event


def record_many(kind: str, events: list[dict], *, actor: str | None = None, client_id: int | None = None) -> None:
    """``record`` for many accounts at once (partner batch reads): one executemany INSERT in the
    current transaction. Each item holds ``account_id`` and its details."""
    if not events:
        return
    common = {"kind": kind, "actor": actor, "client_id": client_id, "at": utcnow()}
    if has_request_context():
        common["ip_address"] = request.remote_addr
        common["user_agent"] = (request.headers.get("User-Agent") or "")[:300]
    db.session.execute(insert(AuditEvent), [
        {**common, "account_id": event.pop("account_id"), "details": event} for event in (dict(e) for e in events)
    ])


def recent_events(account_id: int, limit: int = 20) -> list[AuditEvent]:
    return list(db.session.scalars(
        db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    ))
