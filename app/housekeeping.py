"""Housekeeping: delete rows whose only purpose has passed (expired codes, interactions, login
chains, client-assertion ids, one-time codes, pending upstream logins, old tokens, delivered
outbox events). Run by ``tessera worker`` at most every ``TESSERA_HOUSEKEEPING_INTERVAL``
seconds. Subject mappings, legacy mappings and audit events are never deleted here."""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, or_

from app.accounts.models import OtpChallenge
from app.events.models import OutboxEvent
from app.extensions import db
from app.federation.models import PendingUpstreamLogin
from app.oidc.models import AuthorizationCode, Interaction, LoginChain, Token, UsedAssertion
from app.partners.models import ClaimChange
from app.registries import registries
from app.security import utcnow

#: Rows are kept this long past their expiry (reuse detection of codes, support questions).
GRACE = timedelta(days=1)


def purge_expired() -> dict[str, int]:
    now = utcnow()
    cutoff = now - GRACE
    epoch_cutoff = int(time.time() - GRACE.total_seconds())
    retention = now - timedelta(days=current_app.config["TESSERA_OUTBOX_RETENTION_DAYS"])
    statements = {
        "authorization_codes": delete(AuthorizationCode).where(AuthorizationCode.expires_at < cutoff),
        "interactions": delete(Interaction).where(Interaction.expires_at < cutoff),
        "login_chains": delete(LoginChain).where(LoginChain.expires_at < cutoff),
        "used_assertions": delete(UsedAssertion).where(UsedAssertion.expires_at < now),
        "otp_challenges": delete(OtpChallenge).where(OtpChallenge.expires_at < cutoff),
        "pending_upstream_logins": delete(PendingUpstreamLogin).where(PendingUpstreamLogin.expires_at < cutoff),
        # A token row goes when its access token and its refresh token (if any) are both long expired.
        "tokens": delete(Token).where(
            Token.issued_at + Token.expires_in < epoch_cutoff,
            or_(Token.refresh_expires_at.is_(None), Token.refresh_expires_at < epoch_cutoff),
        ),
        # The change log behind GET /api/changes: kept as long as delivered events.
        "claim_changes": delete(ClaimChange).where(ClaimChange.at < retention),
        "outbox_events": delete(OutboxEvent).where(
            OutboxEvent.status.in_(("delivered", "expired", "rejected")), OutboxEvent.created_at < retention
        ),
    }
    counts = {}
    for name, statement in statements.items():
        counts[name] = db.session.execute(statement).rowcount
    db.session.commit()
    return counts


def run_if_due() -> dict[str, int] | None:
    """Purge at most every TESSERA_HOUSEKEEPING_INTERVAL seconds in this process."""
    last = current_app.extensions.get("tessera_housekeeping_at", 0.0)
    if time.monotonic() - last < current_app.config["TESSERA_HOUSEKEEPING_INTERVAL"]:
        return None
    current_app.extensions["tessera_housekeeping_at"] = time.monotonic()
    return purge_expired()


def init_app(app) -> None:
    registries(app).add_periodic_job("housekeeping", run_if_due)
