"""Audit events: every identity change, login success/failure and consent change."""

from __future__ import annotations

from flask import has_request_context, request

from app.accounts.models import AuditEvent
from app.extensions import db


def record(kind: str, *, account_id: int | None = None, actor: str | None = None, client_id: int | None = None,
           **details) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits with its change)."""
    event = AuditEvent(kind=kind, account_id=account_id, actor=actor, client_id=client_id, details=details)
    if has_request_context():
        event.ip_address = request.remote_addr
        event.user_agent = (request.headers.get("User-Agent") or "")[:300]
    db.session.add(event)
    return event


def recent_events(account_id: int, limit: int = 20) -> list[AuditEvent]:
    return list(db.session.scalars(
        db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    ))
