"""A person's data as one JSON document (``tessera users export``; the same document can serve the
person's own download and the admin API later). Read-only: nothing is written, not even a subject
mapping (a client's ``sub`` is the one recorded, never a new one).

What it holds: the account (status, profile claims, address, dates), every identity (released ones
too), every hub session (ended ones too) with the clients it was used with, each client the person
has a relationship with (consent, tokens, a session, an authorization code) with the ``sub`` it
sees and its token counts, the subjects recorded for the account in every sector (aliases left by
merges too), the merges, the legacy accounts of tenants linked to it, the tenants' custom
attributes, the address book and who wrote each shared claim (partner API), and every audit event.
Never a secret: no password hash, no token or cookie checksum.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, union

from app import audit
from app.accounts.models import PROFILE_CLAIMS, Account, AuditEvent
from app.accounts.operators import identity_rows, merge_rows, resolve_account
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.extensions import db
from app.oidc.models import AuthorizationCode, Client, Consent, SessionClient, SSOSession, SubjectMapping, Token
from app.oidc.subjects import sector_of
from app.partners.models import AccountAddress, ClaimProvenance
from app.security import utcnow
from app.tenants.models import Tenant


def export_account(ref: str | int) -> dict:
    """Everything the hub holds about the account ``ref`` names (``operators.resolve_account``)."""
    account = resolve_account(ref)
    clients = _clients(account.id)
    return {
        "exported_at": utcnow(), "account": _account(account), "identities": identity_rows(account.id),
        "sessions": _sessions(account.id, clients), "clients": _relationships(account.id, clients),
        "subjects": _subjects(account.id), "merges": merge_rows(account.id), "legacy_accounts": _legacy(account.id),
        "attributes": _attributes(account.id), "addresses": _addresses(account.id, clients),
        "claim_provenance": _provenance(account.id, clients), "events": _events(account.id),
    }


def _account(account: Account) -> dict:
    data = {"id": account.id, "status": account.status, "merged_into": account.merged_into_id,
            "has_password": bool(account.password_hash), "created_at": account.created_at,
            "updated_at": account.updated_at, "last_login_at": account.last_login_at, "closed_at": account.closed_at}
    data.update({claim: getattr(account, claim) for claim in PROFILE_CLAIMS})
    data["address"] = account.address
    return data


def _clients(account_id: int) -> dict[int, Client]:
    """Every client the account has something with: a consent, a token, a session, a code."""
    linked = union(
        db.select(Consent.client_id).where(Consent.account_id == account_id),
        db.select(Token.client_id).where(Token.account_id == account_id),
        db.select(AuthorizationCode.client_id).where(AuthorizationCode.account_id == account_id),
        db.select(SessionClient.client_id).join(SSOSession, SSOSession.id == SessionClient.session_id)
        .where(SSOSession.account_id == account_id),
    ).subquery()
    rows = db.session.scalars(db.select(Client).where(Client.id.in_(db.select(linked.c.client_id))).order_by(Client.id))
    return {client.id: client for client in rows}


def _sessions(account_id: int, clients: dict[int, Client]) -> list[dict]:
    used = {}
    for session_id, client_pk in db.session.execute(
            db.select(SessionClient.session_id, SessionClient.client_id).join(
                SSOSession, SSOSession.id == SessionClient.session_id).where(SSOSession.account_id == account_id)):
        used.setdefault(session_id, []).append(clients[client_pk].client_id)
    rows = db.session.scalars(db.select(SSOSession).filter_by(account_id=account_id).order_by(SSOSession.id))
    return [{"sid": s.sid, "created_at": s.created_at, "last_seen_at": s.last_seen_at, "expires_at": s.expires_at,
             "ended_at": s.ended_at, "ip_address": s.ip_address, "user_agent": s.user_agent, "amr": s.amr,
             "clients": sorted(used.get(s.id, []))} for s in rows]


def _relationships(account_id: int, clients: dict[int, Client]) -> list[dict]:
    """Per client: the ``sub`` it sees (recorded), the consent, the tokens it was issued."""
    consents = {c.client_id: c for c in db.session.scalars(db.select(Consent).filter_by(account_id=account_id))}
    now = int(time.time())
    live = (Token.revoked_at.is_(None)) & ((Token.issued_at + Token.expires_in > now) | (Token.refresh_expires_at > now))
    tokens = {pk: (issued, live_count, last) for pk, issued, live_count, last in db.session.execute(
        db.select(Token.client_id, func.count(), func.count().filter(live), func.max(Token.issued_at))
        .where(Token.account_id == account_id).group_by(Token.client_id))}
    subs = {sector: sub for sector, sub in db.session.execute(
        db.select(SubjectMapping.sector, SubjectMapping.sub).filter_by(account_id=account_id, alias=False))}
    out = []
    for pk, client in clients.items():
        consent = consents.get(pk)
        issued, live_count, last = tokens.get(pk, (0, 0, None))
        out.append({
            "client_id": client.client_id, "name": client.name, "sub": subs.get(sector_of(client)),
            "consent": {"scope": consent.scope, "created_at": consent.created_at, "updated_at": consent.updated_at}
            if consent is not None else None,
            "tokens": {"issued": issued, "live": live_count,
                       "last_issued_at": datetime.fromtimestamp(last, UTC).replace(tzinfo=None) if last else None},
        })
    return out


def _subjects(account_id: int) -> list[dict]:
    rows = db.session.scalars(db.select(SubjectMapping).filter_by(account_id=account_id).order_by(SubjectMapping.id))
    return [{"sector": m.sector, "sub": m.sub, "alias": m.alias, "created_at": m.created_at} for m in rows]


def _legacy(account_id: int) -> list[dict]:
    rows = db.session.execute(db.select(LegacyMapping, Tenant.slug).join(Tenant, Tenant.id == LegacyMapping.tenant_id)
                              .where(LegacyMapping.account_id == account_id).order_by(LegacyMapping.id))
    return [{"tenant": slug, "legacy_id": m.legacy_id, "source": m.source, "created_account": m.created_account,
             "created_at": m.created_at, "deleted_at": m.deleted_at} for m, slug in rows]


def _attributes(account_id: int) -> dict[str, dict]:
    rows = db.session.execute(db.select(Tenant.slug, AccountAttributes.data).join(
        Tenant, Tenant.id == AccountAttributes.tenant_id).where(AccountAttributes.account_id == account_id))
    return {slug: data or {} for slug, data in rows}


def _addresses(account_id: int, clients: dict[int, Client]) -> list[dict]:
    rows = db.session.scalars(db.select(AccountAddress).filter_by(account_id=account_id).order_by(AccountAddress.id))
    return [{"id": a.uid, "value": a.value or {}, "version": a.version, "source": a.source, "client": _client_id(a.client_id, clients),
             "written_at": a.written_at, "created_at": a.created_at} for a in rows]


def _provenance(account_id: int, clients: dict[int, Client]) -> list[dict]:
    rows = db.session.scalars(db.select(ClaimProvenance).filter_by(account_id=account_id).order_by(ClaimProvenance.id))
    return [{"claim": p.claim, "namespace": p.namespace or None, "source": p.source,
             "client": _client_id(p.client_id, clients), "at": p.at} for p in rows]


def _client_id(pk: int | None, clients: dict[int, Client]) -> str | None:
    """The public id of a client that wrote something (it may have no other link to the account)."""
    if pk is None:
        return None
    client = clients.get(pk) or db.session.get(Client, pk)
    return client.client_id if client is not None else None


def _events(account_id: int) -> list[dict]:
    rows = db.session.scalars(db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.id))
    return audit.events_to_dicts(list(rows))
