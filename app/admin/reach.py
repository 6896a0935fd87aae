"""What an admin principal reaches, and cursor pages: the one place the admin API and the admin
console (``/admin``) both ask, so the two never differ.

Rules (docs/security.md, "Operator"):

- A tenant admin reaches its tenant, its tenant's clients (and their deliveries), the people
  related to its tenant (``app.partners.relationship.tenant_related_clause``), their merges, its
  tenant's import jobs, and the audit events of its clients and of those people. Every other role
  reaches the whole hub.
- Whatever lies outside reach is unknown: ``AdminRefusal`` 404, never 403, so it does not leak.
- Pages are ``limit`` rows in id order (``newest_first``: descending) after an opaque cursor;
  a cursor is only good for the list that gave it (400 ``invalid_cursor`` otherwise).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from app.accounts import operators
from app.accounts.models import Account, AuditEvent
from app.admin.principals import AdminRefusal, Principal
from app.bulk_import.models import ImportJob
from app.events.models import OutboxEvent
from app.extensions import db
from app.merging.models import MergeRecord
from app.oidc.models import Client
from app.partners.relationship import tenant_related_clause
from app.tenants.models import Tenant

#: Ids are 32-bit integers (PostgreSQL refuses a bigger one in a query).
MAX_ID = 2**31 - 1
_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def unknown(what: str) -> AdminRefusal:
    return AdminRefusal(404, "not_found", "Not found", f"no {what}")


# --- people --------------------------------------------------------------------------------------

def reachable_accounts(principal: Principal, query, column):
    """``query`` cut to the accounts (``column`` holds their id) the principal reaches."""
    if principal.tenant_id is None:
        return query
    return query.where(tenant_related_clause(principal.tenant_id, column))


def account_in_reach(principal: Principal, account_id: int) -> Account:
    """The account, if the principal reaches it (404 otherwise)."""
    query = db.select(Account.id).where(Account.id == account_id)
    if not 0 < account_id <= MAX_ID or db.session.scalar(reachable_accounts(principal, query, Account.id)) is None:
        raise unknown(f"user {account_id}")
    return db.session.get(Account, account_id)


def search_people(principal: Principal, **criteria) -> list[Account]:
    """``operators.search_accounts`` cut to the people the principal reaches."""
    accounts = operators.search_accounts(**criteria)
    if principal.tenant_id is None or not accounts:
        return accounts
    ids = set(db.session.scalars(reachable_accounts(
        principal, db.select(Account.id).where(Account.id.in_([a.id for a in accounts])), Account.id)))
    return [a for a in accounts if a.id in ids]


# --- tenants and clients ---------------------------------------------------------------------------

def tenants_query(principal: Principal):
    query = db.select(Tenant)
    return query if principal.tenant_id is None else query.where(Tenant.id == principal.tenant_id)


def clients_query(principal: Principal):
    query = db.select(Client)
    return query if principal.tenant_id is None else query.where(Client.tenant_id == principal.tenant_id)


def client_in_reach(principal: Principal, client_id: str, *, lock: bool = False) -> Client:
    """The client, if the principal reaches its tenant (404 otherwise); ``lock``: under its row lock."""
    query = db.select(Client).filter_by(client_id=client_id)
    row = db.session.scalar(query.with_for_update(of=Client) if lock else query)
    if row is None or not principal.reaches_tenant(row.tenant_id):
        raise unknown(f"client {client_id!r}")
    return row


# --- what runs behind the people -------------------------------------------------------------------

def merges_query(principal: Principal):
    query = db.select(MergeRecord)
    if principal.tenant_id is not None:
        query = query.where(db.or_(tenant_related_clause(principal.tenant_id, MergeRecord.survivor_id),
                                   tenant_related_clause(principal.tenant_id, MergeRecord.absorbed_id)))
    return query


def _one_in_reach(query, column, pk: int, what: str):
    """The row of ``query`` (a reach-cut query) whose ``column`` is ``pk``; 404 otherwise."""
    row = db.session.scalar(query.where(column == pk)) if 0 < pk <= MAX_ID else None
    if row is None:
        raise unknown(f"{what} {pk}")
    return row


def merge_in_reach(principal: Principal, merge_id: int) -> MergeRecord:
    """The merge, if the principal reaches one of its two people (404 otherwise)."""
    return _one_in_reach(merges_query(principal), MergeRecord.id, merge_id, "merge")


def imports_query(principal: Principal):
    """Import jobs: a tenant admin's are its tenant's."""
    query = db.select(ImportJob)
    return query if principal.tenant_id is None else query.where(ImportJob.tenant_id == principal.tenant_id)


def import_job_in_reach(principal: Principal, job_id: int) -> ImportJob:
    """The import job, if the principal reaches its tenant (404 otherwise)."""
    return _one_in_reach(imports_query(principal), ImportJob.id, job_id, "import job")


def deliveries_query(principal: Principal):
    query = db.select(OutboxEvent)
    if principal.tenant_id is not None:
        query = query.where(OutboxEvent.client_id.in_(
            db.select(Client.id).where(Client.tenant_id == principal.tenant_id)))
    return query


def delivery_in_reach(principal: Principal, event_id: int) -> OutboxEvent:
    """The outbox event, if the principal reaches its client (404 otherwise)."""
    return _one_in_reach(deliveries_query(principal), OutboxEvent.id, event_id, "delivery")


def audit_in_reach(principal: Principal, query):
    """An audit events query cut to the events of the principal's clients and people."""
    tenant_id = principal.tenant_id
    if tenant_id is None:
        return query
    tenant_clients = db.select(Client.id).where(Client.tenant_id == tenant_id)
    return query.where(db.or_(AuditEvent.client_id.in_(tenant_clients),
                              db.and_(AuditEvent.account_id.is_not(None),
                                      tenant_related_clause(tenant_id, AuditEvent.account_id))))


# --- pages ---------------------------------------------------------------------------------------

@dataclass
class Page:
    rows: list
    next_cursor: str | None


def decode_cursor(raw: str) -> int:
    try:
        if not _CURSOR_RE.match(raw):
            raise ValueError
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        if not text.startswith("id:") or not text[3:].isdigit() or int(text[3:]) > MAX_ID:
            raise ValueError
        return int(text[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise AdminRefusal(400, "invalid_cursor", "Invalid request", "the cursor is not one this list gave") from None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def page_of(query, id_column, *, limit: int, cursor: str | None = None, newest_first: bool = False) -> Page:
    """``limit`` rows of ``query`` in id order after ``cursor``, and the cursor of the next page."""
    if cursor:
        after = decode_cursor(cursor)
        query = query.where(id_column < after if newest_first else id_column > after)
    query = query.order_by(id_column.desc() if newest_first else id_column).limit(limit + 1)
    rows = list(db.session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].id) if more else None)
