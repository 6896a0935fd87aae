"""Remembered browsers ("remember this browser"): after a second step the person may ask the hub
not to ask it again in this browser for a while.

Rules:

- How long: the tenant's policy ``remember_browser_days`` for logins to its clients, else
  ``TESSERA_REMEMBER_BROWSER_DAYS`` (0 turns it off; at most 365).
- The cookie holds a random 256-bit id; the hub keeps its SHA-256 with the account and the expiry.
  It is HttpOnly, SameSite=Lax, Secure when the issuer is https.
- A remembered browser skips the second step only for a site that asks for no more than one factor
  (``Requirement.wanted`` of 1): the session then says what really happened (its ``amr`` holds the
  first factor only, its level is 1). A site that wants or requires more still gets the second step.
- The person sees and forgets remembered browsers on /account/security; an operator's reset of the
  second factors forgets them all.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, request

from app import audit
from app.extensions import db
from app.mfa.models import TrustedBrowser
from app.security import new_secret, token_hash, utcnow

COOKIE = "tessera_tb"
MAX_DAYS = 365


def remember_days(policy) -> int:
    """Days a browser may be remembered under ``policy`` (a tenant's, or None: the hub's)."""
    value = (policy or {}).get("remember_browser_days")
    if not isinstance(value, int) or isinstance(value, bool):
        value = current_app.config["TESSERA_REMEMBER_BROWSER_DAYS"]
    return max(0, min(int(value), MAX_DAYS))


def remember(response, account_id: int, days: int) -> None:
    """Remember this browser for ``account_id`` for ``days``: a row and the cookie on ``response``."""
    if days <= 0:
        return
    token = new_secret(32)
    expires = utcnow() + timedelta(days=days)
    db.session.add(TrustedBrowser(account_id=account_id, token_hash=token_hash(token), expires_at=expires,
                                  user_agent=(request.headers.get("User-Agent") or "")[:300]))
    audit.record("mfa.browser_remembered", account_id=account_id, actor="self", days=days)
    db.session.commit()
    secure = urlsplit(current_app.config["TESSERA_ISSUER"]).scheme == "https"
    response.set_cookie(COOKIE, token, max_age=days * 86400, httponly=True, secure=secure, samesite="Lax")


def waives(account_id: int, policy) -> bool:
    """Whether this browser is remembered for ``account_id`` (and ``policy`` allows remembering)."""
    token = request.cookies.get(COOKIE)
    if not token or remember_days(policy) == 0:
        return False
    row = db.session.scalar(db.select(TrustedBrowser).filter_by(token_hash=token_hash(token), account_id=account_id))
    if row is None or row.expires_at <= utcnow():
        return False
    row.last_used_at = utcnow()
    db.session.commit()
    return True


def browsers_of(account_id: int) -> list[TrustedBrowser]:
    return list(db.session.scalars(db.select(TrustedBrowser).where(
        TrustedBrowser.account_id == account_id, TrustedBrowser.expires_at > utcnow()).order_by(TrustedBrowser.id)))


def forget(account_id: int, browser_id: int | None = None, actor: str = "self") -> int:
    """Forget one remembered browser of the account (or all of them); how many."""
    query = db.delete(TrustedBrowser).where(TrustedBrowser.account_id == account_id)
    if browser_id is not None:
        query = query.where(TrustedBrowser.id == browser_id)
    count = db.session.execute(query).rowcount
    if count:
        audit.record("mfa.browsers_forgotten", account_id=account_id, actor=actor, count=count)
    db.session.commit()
    return count


def forget_for_reset(account_id: int, actor: str) -> int:  # noqa: ARG001 (audited by the reset)
    return db.session.execute(db.delete(TrustedBrowser).where(TrustedBrowser.account_id == account_id)).rowcount
