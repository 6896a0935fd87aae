"""What a person sees of the protocol side on /account: their live hub sessions (ending one tells
its clients, as a logout) and the clients they consented to or that hold their tokens
(withdrawing consent revokes every token). Each change is audited and committed here; the
account's own token revocation (``revoke_account_tokens``) is also what an operator's reset,
revocation and closing use, in their transaction."""

from __future__ import annotations

import time

from sqlalchemy import delete, or_, update

from app import audit
from app.errors import NotFound
from app.extensions import db
from app.oidc.logout import end_session
from app.oidc.models import AuthorizationCode, Client, Consent, SSOSession, Token
from app.security import utcnow


def live_sessions(account_id: int) -> list:
    """The account's hub sessions that have not ended or expired, newest first."""
    return list(db.session.scalars(
        db.select(SSOSession)
        .where(SSOSession.account_id == account_id, SSOSession.ended_at.is_(None), SSOSession.expires_at > utcnow())
        .order_by(SSOSession.created_at.desc(), SSOSession.id.desc())
    ))


def revoke_session(account_id: int, session_id: int) -> list[str]:
    """End one of the account's sessions (its clients are told, as for a logout); returns the
    front-channel logout URLs."""
    session = db.session.get(SSOSession, session_id)
    if session is None or session.account_id != account_id or session.ended_at is not None:
        raise NotFound("no such session")
    frontchannel = end_session(session, commit=False)
    audit.record("session.revoked", account_id=account_id, actor="self", sid=session.sid)
    db.session.commit()
    return frontchannel


def connected_clients(account_id: int) -> list[dict]:
    """Clients the account consented to or holds live tokens at: {client, scope, tokens}."""
    now = int(time.time())
    consents = {c.client_id: c for c in db.session.scalars(db.select(Consent).filter_by(account_id=account_id))}
    live = (Token.revoked_at.is_(None)) & (
        (Token.issued_at + Token.expires_in > now) | (Token.refresh_expires_at > now)
    )
    counts = dict(db.session.execute(
        db.select(Token.client_id, db.func.count()).where(Token.account_id == account_id, live).group_by(Token.client_id)
    ).all())
    ids = set(consents) | set(counts)
    clients = db.session.scalars(db.select(Client).where(Client.id.in_(ids)).order_by(Client.name)) if ids else []
    return [
        {"client": c, "scope": consents[c.id].scope if c.id in consents else "", "tokens": counts.get(c.id, 0)}
        for c in clients
    ]


def revoke_client_access(account_id: int, client_pk: int) -> None:
    """Withdraw consent from a client and revoke every token it holds for the account."""
    consents = db.session.execute(
        delete(Consent).where(Consent.account_id == account_id, Consent.client_id == client_pk)
    ).rowcount
    tokens = revoke_account_tokens(account_id, client_pk)
    if not consents and not tokens:
        db.session.rollback()
        raise NotFound("this site has no access to your account")
    audit.record("consent.revoked", account_id=account_id, actor="self", client_id=client_pk,
                 consent_removed=bool(consents), tokens_revoked=tokens)
    db.session.commit()


def revoke_account_tokens(account_id: int, client_pk: int | None = None, keep_sid: str | None = None) -> int:
    """Revoke every live token of the account (at one client, or at all; but those issued in the
    hub session ``keep_sid``, when given): the access token and the refresh token of each row
    (RFC 7009 2.1: a revoked refresh token takes its access token with it). Its authorization
    codes not yet exchanged are voided too (marked used), so none brings a new token. In the
    caller's transaction; returns how many tokens were revoked."""
    now = utcnow()
    tokens = update(Token).where(Token.account_id == account_id, Token.revoked_at.is_(None))
    codes = update(AuthorizationCode).where(AuthorizationCode.account_id == account_id,
                                            AuthorizationCode.used_at.is_(None))
    if client_pk is not None:
        tokens = tokens.where(Token.client_id == client_pk)
        codes = codes.where(AuthorizationCode.client_id == client_pk)
    if keep_sid is not None:
        # A token with no session (none recorded) is not the kept session's: it goes.
        tokens = tokens.where(or_(Token.sid.is_(None), Token.sid != keep_sid))
        codes = codes.where(or_(AuthorizationCode.sid.is_(None), AuthorizationCode.sid != keep_sid))
    db.session.execute(codes.values(used_at=now))
    return db.session.execute(tokens.values(revoked_at=now)).rowcount
