"""What a merge would do, without doing it: the identities that move, the profile claims that
change, the clients told, the sessions ended (shown to the user; ``--dry-run`` for operators).

Single-valued profile claims follow a per-claim rule (``TESSERA_MERGE_CLAIM_RULES``): ``survivor``
(the default), ``newest`` or ``absorbed``; every rule fills a claim the survivor leaves blank.
Multi-valued data is unioned by the merge itself (``app.merging.steps``).
"""

from __future__ import annotations

from flask import current_app

from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.oidc.clients import get_client_by_pk
from app.oidc.models import AuthorizationCode, Consent, SessionClient, SSOSession, Token

CLAIM_RULES = ("survivor", "newest", "absorbed")
#: Multi-valued data is unioned; single-valued claims follow these rules unless configured.
DEFAULT_RULE = "survivor"


def clients_that_saw(account_id: int) -> list[int]:
    """The clients (primary keys) that ever saw the account: a token, a consent, a code or a session."""
    ids = set(db.session.scalars(db.select(Token.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(db.select(Consent.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(db.select(AuthorizationCode.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(
        db.select(SessionClient.client_id).join(SSOSession, SSOSession.id == SessionClient.session_id)
        .where(SSOSession.account_id == account_id)
    ))
    return sorted(ids)


def claim_rules() -> dict[str, str]:
    configured = current_app.config.get("TESSERA_MERGE_CLAIM_RULES") or {}
    rules = {claim: configured.get(claim, DEFAULT_RULE) for claim in (*PROFILE_CLAIMS, "address")}
    unknown = {r for r in rules.values() if r not in CLAIM_RULES}
    if unknown:
        raise InvalidInput(f"unknown merge rule(s) {', '.join(sorted(unknown))}; use {', '.join(CLAIM_RULES)}")
    return rules


def merged_claims(survivor: Account, absorbed: Account) -> dict[str, tuple]:
    """claim → (old survivor value, new value), for the claims the merge changes."""
    changes = {}
    absorbed_newer = (absorbed.updated_at or absorbed.created_at) > (survivor.updated_at or survivor.created_at)
    for claim, rule in claim_rules().items():
        mine, theirs = getattr(survivor, claim), getattr(absorbed, claim)
        if theirs in (None, "", {}):
            continue
        take = (
            mine in (None, "", {})                       # every rule fills a blank
            or (rule == "newest" and absorbed_newer)
            or rule == "absorbed"
        )
        if take and mine != theirs:
            changes[claim] = (mine, theirs)
    return changes


def preview_merge(survivor_id: int, absorbed_id: int) -> dict:
    """What a merge would do, without doing it (shown to the user; ``--dry-run`` for operators)."""
    survivor, absorbed = db.session.get(Account, survivor_id), db.session.get(Account, absorbed_id)
    if survivor is None or absorbed is None:
        raise NotFound("both accounts must exist")
    identities = db.session.scalars(db.select(Identity).filter_by(account_id=absorbed_id, released_at=None)).all()
    clients = [get_client_by_pk(pk) for pk in clients_that_saw(absorbed_id)]
    return {
        "survivor": survivor_id,
        "absorbed": absorbed_id,
        "identities_moving": [{"kind": i.kind, "value": i.value, "verified": i.verified} for i in identities],
        "claims_changing": {c: {"from": old, "to": new} for c, (old, new) in merged_claims(survivor, absorbed).items()},
        "password": "taken from the absorbed account" if not survivor.password_hash and absorbed.password_hash else "unchanged",
        "clients_told": [{"client_id": c.client_id, "name": c.name, "events_endpoint": c.events_endpoint}
                         for c in clients if c is not None],
        "sessions_ended": db.session.scalar(db.select(db.func.count()).select_from(SSOSession)
                                            .filter_by(account_id=absorbed_id, ended_at=None)),
    }
