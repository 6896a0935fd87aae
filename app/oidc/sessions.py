"""The hub (SSO) session: who is logged in to this browser, since when and how.

The browser holds a random cookie value; the row holds its SHA-256. Every login creates a new
session with a new cookie value and a new ``sid`` (no session fixation). A session ends at its
absolute expiry, after ``TESSERA_SESSION_IDLE_TTL`` without use, or at logout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, timedelta
from urllib.parse import urlsplit

from flask import current_app, g, request

from app.accounts.models import Account
from app.dbutil import insert_ignoring_conflicts
from app.errors import AuthenticationFailed
from app.extensions import db
from app.oidc.assurance import assurance
from app.oidc.models import Client, SessionClient, SSOSession
from app.security import new_secret, token_hash, utcnow

COOKIE_NAME = "tessera_session"
#: Session Management 1.0 browser state: readable by the check_session_iframe's script, it changes
#: at every login and logout. "anonymous" when nobody is logged in; absent if the browser blocks it.
#: While a session lives the value is ``<browser state>.<deadline>``: the Unix time at which the
#: session ends unless used again (idle or absolute timeout), after which the iframe takes the
#: browser state to be "anonymous". Each request that records the session's use moves it.
BROWSER_STATE_COOKIE = "tessera_bs"
ANONYMOUS_STATE = "anonymous"
#: How stale last_seen_at may get before a request writes it again (keeps reads read-only).
TOUCH_INTERVAL = timedelta(seconds=60)

def start_session(account: Account, amr: list[str]) -> tuple[SSOSession, str]:
    """Create a session for a fresh login (a new sid and cookie value: no session fixation);
    returns it with the cookie value to set. The caller deals with the browser's previous session
    (``app.oidc.logout.replace_session``). Its ``acr`` is what the methods ``amr`` reach
    (``app.oidc.assurance``).

    The account row is locked and re-read first (the order of ``app.accounts.locking``): a login
    checked the account before this transaction, and a merge or a closure may have finished
    since. A session is never started on an account that is no longer active; a merge completing
    later ends the sessions started meanwhile under the same row lock."""
    for_update = db.session.get_bind().dialect.name == "postgresql"
    current = db.session.get(Account, account.id, with_for_update=for_update or None, populate_existing=True)
    if current is None or not current.is_active:
        db.session.rollback()
        raise AuthenticationFailed("this account is not active: sign in again")
    cookie_value = new_secret(32)
    now = utcnow()
    acr, amr = assurance(amr)
    session = SSOSession(
        sid=new_secret(24), cookie_hash=token_hash(cookie_value), account_id=account.id,
        auth_time=int(time.time()), amr=amr, acr=acr,
        user_agent=(request.headers.get("User-Agent") or "")[:300], ip_address=request.remote_addr,
        created_at=now, last_seen_at=now,
        expires_at=now + timedelta(seconds=current_app.config["TESSERA_SESSION_MAX_TTL"]),
    )
    db.session.add(session)
    db.session.commit()
    g.hub_session, g.hub_account = session, account
    return session, cookie_value


def renew_auth_time(session: SSOSession, *methods: str) -> None:
    """The person proved it is them again (``methods``: RFC 8176 amr values) in this session:
    its ``auth_time`` (OIDC Core: the time of the last authentication) is now, and its ``acr`` what
    all its methods together reach (a second factor steps the session up)."""
    session.auth_time = int(time.time())
    session.acr, session.amr = assurance([*(session.amr or []), *methods])
    db.session.commit()


def login_age(session: SSOSession) -> int:
    """Seconds since the session's last authentication."""
    return int(time.time()) - session.auth_time


def current_session() -> SSOSession | None:
    """The live session of this browser, or None. Cached for the request."""
    if "hub_session" in g:
        return g.hub_session
    session = None
    cookie_value = request.cookies.get(COOKIE_NAME)
    if cookie_value:
        # The account comes along in the same statement: every caller wants it (current_account).
        row = db.session.execute(
            db.select(SSOSession, Account).join(Account, Account.id == SSOSession.account_id)
            .where(SSOSession.cookie_hash == token_hash(cookie_value))
        ).first()
        session, g.hub_account = row if row is not None else (None, None)
        now = utcnow()
        idle = timedelta(seconds=current_app.config["TESSERA_SESSION_IDLE_TTL"])
        if session is not None and (
            session.ended_at is not None or session.expires_at <= now or session.last_seen_at + idle <= now
        ):
            session = None
        elif session is not None and session.last_seen_at + TOUCH_INTERVAL <= now:
            session.last_seen_at = now
            db.session.commit()
            g.hub_session_touched = True  # a later idle deadline for the browser-state cookie
    g.hub_session = session
    return session


def current_account() -> Account | None:
    """The account of this browser's live session if it is active (loaded with the session), or None."""
    session = current_session()
    account = g.get("hub_account") if session is not None else None
    return account if account is not None and account.is_active else None


#: Per-process memory of (session sid, client id) pairs already recorded: the row outlives every
#: use of the pair (it goes only with its session, whose random sid is never reused), so an SSO
#: authorization at a site the session already knows costs no statement.
_REMEMBERED_LIMIT = 100_000


def remember_client(session: SSOSession, client: Client) -> None:
    """Record that the session was used with the client (for logout fan-out)."""
    remembered = current_app.extensions.setdefault("tessera_session_clients", set())
    if (session.sid, client.id) in remembered:
        return
    known = db.session.scalar(db.select(SessionClient.id).filter_by(session_id=session.id, client_id=client.id))
    if known is None:
        insert_ignoring_conflicts(SessionClient, session_id=session.id, client_id=client.id)
    else:  # only rows seen committed are remembered (this request may still roll back)
        if len(remembered) >= _REMEMBERED_LIMIT:
            remembered.clear()
        remembered.add((session.sid, client.id))


def browser_state(session: SSOSession | None) -> str:
    if session is None:
        return ANONYMOUS_STATE
    return hmac.new(current_app.config["SECRET_KEY"].encode(), f"bs:{session.sid}".encode(), hashlib.sha256).hexdigest()[:32]


def session_deadline(session: SSOSession) -> int:
    """Unix time at which the session ends if it is not used before: the idle or the absolute timeout."""
    idle_end = session.last_seen_at + timedelta(seconds=current_app.config["TESSERA_SESSION_IDLE_TTL"])
    return int(min(idle_end, session.expires_at).replace(tzinfo=UTC).timestamp())


def session_state(client_id: str, redirect_uri: str, session: SSOSession | None) -> str:
    """Session Management 1.0 section 3: a salted hash of client_id, RP origin and browser state."""
    parts = urlsplit(redirect_uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    salt = secrets.token_hex(8)
    digest = hashlib.sha256(f"{client_id} {origin} {browser_state(session)} {salt}".encode()).hexdigest()
    return f"{digest}.{salt}"


def _cookie_flags() -> dict:
    secure = current_app.config["TESSERA_ISSUER"].startswith("https://")
    # Cross-site redirects back to the hub are top-level GETs, which Lax allows; None (with
    # Secure) is needed for the session-management iframe and cross-site POSTs, and only
    # possible over https.
    return {"secure": secure, "samesite": "None" if secure else "Lax", "path": "/"}


def set_session_cookie(response, cookie_value: str, session: SSOSession) -> None:
    max_age = current_app.config["TESSERA_SESSION_MAX_TTL"]
    response.set_cookie(COOKIE_NAME, cookie_value, httponly=True, max_age=max_age, **_cookie_flags())
    _set_browser_state_cookie(response, session)


def _set_browser_state_cookie(response, session: SSOSession) -> None:
    value = f"{browser_state(session)}.{session_deadline(session)}"
    max_age = current_app.config["TESSERA_SESSION_MAX_TTL"]
    response.set_cookie(BROWSER_STATE_COOKIE, value, httponly=False, max_age=max_age, **_cookie_flags())


def refresh_browser_state_cookie(response):
    """``after_request``: the request recorded the session's use, so its idle deadline moved; the
    check_session iframe learns the new one (Session Management 1.0 with idle timeouts)."""
    session = g.get("hub_session")
    if g.get("hub_session_touched") and session is not None and session.ended_at is None:
        if not any(h.startswith(BROWSER_STATE_COOKIE + "=") for h in response.headers.getlist("Set-Cookie")):
            _set_browser_state_cookie(response, session)
    return response


def clear_session_cookie(response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/")
    response.set_cookie(BROWSER_STATE_COOKIE, ANONYMOUS_STATE, httponly=False, **_cookie_flags())
