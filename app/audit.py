"""Audit events: every identity change, login success/failure, consent change and operator action,
added to the transaction of the change (a models-layer module: every layer above may record)."""

from __future__ import annotations

from datetime import datetime

from flask import has_request_context, request
from sqlalchemy import insert

from app.accounts.models import AuditEvent
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.metrics import count_audited
from app.oidc.models import Client
from app.security import utcnow

#: The most events one search returns.
MAX_SEARCH = 10_000


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
    """The account's newest events first (its own security history, /account)."""
    return list(db.session.scalars(
        db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    ))


def search_events(*, account_id: int | None = None, client_id: str | None = None, kind: str | None = None,
                  actor: str | None = None, since: datetime | None = None, until: datetime | None = None,
                  limit: int = 100) -> list[AuditEvent]:
    """Events matching every criterion given, newest first, at most ``limit`` (1–``MAX_SEARCH``).
    ``client_id`` is a client's public id; ``kind`` and ``actor`` match exactly, or as a prefix
    when they end with ``*`` (``login.*``); ``since`` is inclusive, ``until`` exclusive."""
    if not 1 <= limit <= MAX_SEARCH:
        raise InvalidInput(f"the limit must be between 1 and {MAX_SEARCH}")
    query = events_query(account_id=account_id, client_id=client_id, kind=kind, actor=actor, since=since, until=until)
    return list(db.session.scalars(query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)))


def events_query(*, account_id: int | None = None, client_id: str | None = None, kind: str | None = None,
                 actor: str | None = None, since: datetime | None = None, until: datetime | None = None):
    """The unordered SELECT of ``search_events`` (the admin API pages it by id)."""
    query = db.select(AuditEvent)
    if account_id is not None:
        query = query.where(AuditEvent.account_id == account_id)
    if client_id is not None:
        pk = db.session.scalar(db.select(Client.id).filter_by(client_id=client_id))
        if pk is None:
            raise NotFound(f"no client {client_id!r}")
        query = query.where(AuditEvent.client_id == pk)
    for column, pattern in ((AuditEvent.kind, kind), (AuditEvent.actor, actor)):
        if pattern:
            query = query.where(_matches(column, pattern))
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return query


def _matches(column, pattern: str):
    if not pattern.endswith("*"):
        return column == pattern
    prefix = pattern[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(prefix + "%", escape="\\")


def event_to_dict(event: AuditEvent) -> dict:
    """An event as operators see it; ``client`` is the client's public id."""
    return events_to_dicts([event])[0]


def events_to_dicts(events: list[AuditEvent]) -> list[dict]:
    """``event_to_dict`` of many events, their clients' public ids read in one query."""
    pks = {e.client_id for e in events if e.client_id}
    client_ids = dict(db.session.execute(
        db.select(Client.id, Client.client_id).where(Client.id.in_(pks))).all()) if pks else {}
    return [{"id": e.id, "at": e.at, "kind": e.kind, "account_id": e.account_id, "actor": e.actor,
             "client": client_ids.get(e.client_id), "ip_address": e.ip_address, "user_agent": e.user_agent,
             "details": e.details or {}} for e in events]
