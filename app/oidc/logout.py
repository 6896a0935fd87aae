"""Single logout: RP-Initiated Logout 1.0, Front-Channel Logout 1.0, Back-Channel Logout 1.0.

Ending a hub session, in one transaction: the session row is ended and a logout token for every
client the session was used with (that registered a ``backchannel_logout_uri``) is written to the
outbox, which the worker delivers until the client acknowledges. Front-channel logout URLs are
returned for the page that loads them in iframes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from flask import current_app

from app.dbutil import insert_ignoring_conflicts
from app.errors import InvalidInput
from app.events.outbox import enqueue
from app.extensions import db
from app.oidc.clients import ClientInfo, get_client
from app.oidc.id_tokens import decode_id_token_hint
from app.oidc.keys import sign_for_client
from app.oidc.models import Client, SessionClient, SSOSession
from app.oidc.sessions import current_session
from app.oidc.subjects import subject_for
from app.security import new_secret, utcnow

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120


@dataclass
class EndSessionRequest:
    client: ClientInfo | None
    post_logout_redirect_uri: str | None
    state: str | None
    #: True when the request proves it comes from the session's user (a valid id_token_hint of
    #: this session's account): the logout happens without a confirmation page.
    trusted: bool


def issue_logout_token(client: Client | ClientInfo, account_id: int, sid: str) -> tuple[str, str]:
    """A Back-Channel Logout 1.0 section 2.4 logout token; returns (jwt, jti)."""
    now = int(time.time())
    jti = new_secret(24)
    claims = {
        "iss": current_app.config["TESSERA_ISSUER"], "aud": client.client_id, "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL, "jti": jti, "sub": subject_for(client, account_id), "sid": sid,
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return sign_for_client(client, claims, typ="logout+jwt"), jti


def parse_end_session_request(params) -> EndSessionRequest:
    """Validate an end_session request (RP-Initiated Logout 1.0 section 2 and 3)."""
    hint = params.get("id_token_hint")
    client_id = params.get("client_id")
    hinted = None
    if hint:
        hinted = decode_id_token_hint(hint)
        if hinted is None:
            raise InvalidInput("id_token_hint is not an ID token issued by this provider")
        audiences = hinted["aud"] if isinstance(hinted["aud"], list) else [hinted["aud"]]
        if client_id and client_id not in audiences:
            raise InvalidInput("client_id does not match the audience of id_token_hint")
        client_id = client_id or audiences[0]
    client = get_client(client_id) if client_id else None
    if client_id and client is None:
        raise InvalidInput("unknown client_id")

    redirect = params.get("post_logout_redirect_uri")
    if redirect:
        # Section 3: only a registered URI, and only when the client is identified.
        if client is None:
            raise InvalidInput("post_logout_redirect_uri needs id_token_hint or client_id")
        if redirect not in client.post_logout_redirect_uris:
            raise InvalidInput("post_logout_redirect_uri is not registered for this client")

    session = current_session()
    trusted = bool(
        hinted and session is not None and client is not None
        and (hinted.get("sid") == session.sid or hinted.get("sub") == subject_for(client, session.account_id))
    )
    return EndSessionRequest(client=client, post_logout_redirect_uri=redirect, state=params.get("state"), trusted=trusted)


def end_session(session: SSOSession | None, commit: bool = True) -> list[str]:
    """End the hub session and tell its clients. Returns the front-channel logout URLs to load.
    With ``commit=False`` the caller commits (a merge step ends sessions inside its transaction)."""
    if session is None:
        return []
    issuer = current_app.config["TESSERA_ISSUER"]
    clients = list(db.session.scalars(
        db.select(Client).join(SessionClient, SessionClient.client_id == Client.id)
        .where(SessionClient.session_id == session.id)
    ))
    frontchannel = []
    for client in clients:
        if client.backchannel_logout_uri:
            token, jti = issue_logout_token(client, session.account_id, session.sid)
            enqueue(kind="backchannel_logout", client_id=client.id, url=client.backchannel_logout_uri,
                    body=urlencode({"logout_token": token}), content_type="application/x-www-form-urlencoded", jti=jti,
                    expires_at=utcnow() + timedelta(seconds=LOGOUT_TOKEN_TTL))
        if client.frontchannel_logout_uri:
            # Front-Channel Logout 1.0 section 2: iss and sid as query parameters.
            sep = "&" if "?" in client.frontchannel_logout_uri else "?"
            frontchannel.append(f"{client.frontchannel_logout_uri}{sep}{urlencode({'iss': issuer, 'sid': session.sid})}")
    session.ended_at = utcnow()
    if commit:
        db.session.commit()
    return frontchannel


def close_account_sessions(account_id: int, keep_sid: str | None = None) -> list[str]:
    """End every live session of an account (but the one whose sid is ``keep_sid``: a person who
    changed their password stays logged in where they did it) and tell its clients, inside the
    caller's transaction (deregistration, an account closed by a bind or a merge, a new password).
    Returns front-channel URLs."""
    query = db.select(SSOSession).filter_by(account_id=account_id, ended_at=None)
    if keep_sid is not None:
        query = query.where(SSOSession.sid != keep_sid)
    return [url for session in list(db.session.scalars(query)) for url in end_session(session, commit=False)]


def end_sessions_of(account, **_) -> list[str]:
    """Receiver of ``account_closed`` and ``account_locked`` (connected by ``app.oidc.wiring``):
    the account's sessions end, its clients are told; returns the front-channel logout URLs."""
    return close_account_sessions(account.id)


def end_expired_sessions(limit: int = 100) -> int:
    """End sessions past their idle or absolute timeout, so their clients are told (back-channel)
    as for a logout. Run by the outbox worker."""
    now = utcnow()
    idle = timedelta(seconds=current_app.config["TESSERA_SESSION_IDLE_TTL"])
    expired = list(db.session.scalars(
        db.select(SSOSession)
        .where(SSOSession.ended_at.is_(None), (SSOSession.expires_at <= now) | (SSOSession.last_seen_at <= now - idle))
        .limit(limit)
    ))
    for session in expired:
        end_session(session)
    return len(expired)


def replace_session(old: SSOSession | None, new: SSOSession) -> None:
    """A new login in a browser that had a session. Another account: the old session is logged
    out everywhere (back-channel). The same account: its clients carry over to the new session,
    so a later logout still reaches them."""
    if old is None:
        return
    if old.account_id != new.account_id:
        end_session(old)
        return
    for client_id in db.session.scalars(db.select(SessionClient.client_id).filter_by(session_id=old.id)):
        insert_ignoring_conflicts(SessionClient, session_id=new.id, client_id=client_id)
    db.session.commit()


def after_logout_url(request: EndSessionRequest) -> str | None:
    if not request.post_logout_redirect_uri:
        return None
    query = urlencode({"state": request.state}) if request.state else ""
    if not query:
        return request.post_logout_redirect_uri
    sep = "&" if "?" in request.post_logout_redirect_uri else "?"
    return f"{request.post_logout_redirect_uri}{sep}{query}"


def confirmation_params(request: EndSessionRequest) -> dict:
    """What the confirmation page needs to finish the logout the same way (all re-validated)."""
    params = {}
    if request.client is not None:
        params["client_id"] = request.client.client_id
    if request.post_logout_redirect_uri:
        params["post_logout_redirect_uri"] = request.post_logout_redirect_uri
    if request.state:
        params["state"] = request.state
    return params
