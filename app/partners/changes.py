"""Change propagation of shared claims: provenance, the change log (polling cursor) and
claims-changed Security Event Tokens (RFC 8417) pushed through the outbox (RFC 8935). Partners'
own writes call ``note_write``; the account core's and the importer's changes arrive through the
``claims_changed`` signal (``note_claims_changed``)."""

from __future__ import annotations

from flask import current_app

from app.events.outbox import enqueue
from app.oidc.keys import security_event_token
from app.extensions import db
from app.oidc.clients import get_client_by_pk
from app.oidc.models import Client, SubjectMapping
from app.oidc.subjects import sector_of, subject_for
from app.partners.contracts import Contract, contract_for, may_access
from app.partners.models import ClaimChange, ClaimProvenance, DataContract
from app.security import utcnow

CLAIMS_CHANGED_EVENT = "urn:tessera:event:claims-changed"


def namespace_of(tenant_id: int | None) -> str:
    return f"tenant:{tenant_id}" if tenant_id else ""


def note_write(account_id: int, claims: list[str], *, source: str, client: Client | None = None,
               tenant_id: int | None = None) -> None:
    """Record who changed which claims (provenance), log the change and queue a claims-changed
    SET for every subscribing client that may read one of them. ``tenant_id``: the claims are that
    tenant's custom attributes. In the caller's transaction; the caller commits."""
    if not claims:
        return
    now = utcnow()
    namespace = namespace_of(tenant_id)
    for claim in claims:
        row = db.session.scalar(db.select(ClaimProvenance).filter_by(account_id=account_id, namespace=namespace, claim=claim))
        if row is None:
            row = ClaimProvenance(account_id=account_id, namespace=namespace, claim=claim)
            db.session.add(row)
        row.source, row.client_id, row.at = source, client.id if client else None, now
    change = ClaimChange(account_id=account_id, tenant_id=tenant_id, claims=sorted(claims),
                         client_id=client.id if client else None, at=now)
    db.session.add(change)
    db.session.flush()
    _queue_events(change, writer=client)


def note_claims_changed(account_id: int, *, claims: list[str], source: str, client: Client | None = None,
                        tenant_id: int | None = None, **_) -> None:
    """Receiver of ``app.signals.claims_changed`` (connected by ``app.partners.wiring``): the core's
    changes are noted like a partner's own writes. In the sender's transaction."""
    note_write(account_id, claims, source=source, client=client, tenant_id=tenant_id)


def _visible_claims(change: ClaimChange, client: Client, contract: Contract) -> list[str]:
    if change.tenant_id is not None and change.tenant_id != client.tenant_id:
        return []
    return [c for c in change.claims if contract.can_read(c)]


def _knows(client: Client, account_id: int) -> bool:
    """The client was handed a subject of this account already (no new subjects are minted here)."""
    return db.session.scalar(
        db.select(SubjectMapping.id).filter_by(sector=sector_of(client), account_id=account_id).limit(1)
    ) is not None


def claims_changed_token(client: Client, sub: str, claims: list[str], change_id: int) -> tuple[str, str]:
    """An RFC 8417 SET telling ``client`` which claims of one of its subjects changed."""
    issuer = current_app.config["TESSERA_ISSUER"]
    return security_event_token(client, f"claims-{change_id}", {CLAIMS_CHANGED_EVENT: {
        "subject": {"format": "iss_sub", "iss": issuer, "sub": sub},
        "claims": claims,
    }})


def _queue_events(change: ClaimChange, writer: Client | None) -> None:
    subscribers = db.session.scalars(db.select(DataContract.client_id).filter_by(subscribe=True))
    for client_pk in subscribers:
        if writer is not None and client_pk == writer.id:
            continue  # the writer knows what it wrote
        client = get_client_by_pk(client_pk)
        if client is None or not client.events_endpoint:
            continue
        contract = contract_for(client)
        claims = _visible_claims(change, client, contract)
        if not claims or not _knows(client, change.account_id) or not may_access(client, change.account_id):
            continue
        token, jti = claims_changed_token(client, subject_for(client, change.account_id), claims, change.id)
        # RFC 8935: the SET is the body, application/secevent+jwt; retried until acknowledged.
        enqueue(kind="set", client_id=client.id, url=client.events_endpoint, body=token,
                content_type="application/secevent+jwt", jti=jti, reference=f"claims-{change.id}")


def changes_since(client: Client, contract: Contract, cursor: int, limit: int,
                  account_id: int | None = None) -> tuple[list[dict], int]:
    """Changes after ``cursor`` to claims this client may read, of people it knows and may see;
    and the cursor to ask from next time (past every change looked at, shown or not)."""
    query = (
        db.select(ClaimChange).where(ClaimChange.id > cursor)
        .where(db.select(SubjectMapping.id).where(
            SubjectMapping.sector == sector_of(client), SubjectMapping.account_id == ClaimChange.account_id).exists())
        .order_by(ClaimChange.id).limit(limit)
    )
    if account_id is not None:  # a token on one person's behalf sees that person's changes only
        query = query.where(ClaimChange.account_id == account_id)
    rows = list(db.session.scalars(query))
    changes = []
    for change in rows:
        claims = _visible_claims(change, client, contract)
        if claims and may_access(client, change.account_id):
            changes.append({"cursor": str(change.id), "sub": subject_for(client, change.account_id),
                            "claims": claims, "at": change.at.isoformat() + "Z"})
    next_cursor = rows[-1].id if rows else cursor
    db.session.commit()  # subjects recorded by subject_for
    return changes, next_cursor
