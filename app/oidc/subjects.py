"""Subject identifiers (OIDC Core 8): pairwise by default, ``public`` per client.

A pairwise ``sub`` is a keyed hash of the sector identifier and the account id (Core 8.1). Every
subject handed out is stored in ``subject_mappings``; the stored value wins over a fresh
computation, so subjects never change once a client has seen them (and survive merges later).
``public`` clients share the sector ``":public"``: one subject per account for all of them, still
never the internal account id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

from app.dbutil import insert_ignoring_conflicts
from app.extensions import db
from app.oidc.models import Client, SubjectMapping

#: Sector of every public-subject client. Host names cannot contain ":", so no pairwise sector clashes.
PUBLIC_SECTOR = ":public"


def sector_of(client: Client) -> str:
    return PUBLIC_SECTOR if client.subject_type == "public" else client.sector_identifier


def _salt() -> bytes:
    salt = current_app.config.get("TESSERA_PAIRWISE_SALT")
    if salt:
        return salt.encode("utf-8")
    return hmac.new(current_app.config["SECRET_KEY"].encode(), b"tessera-pairwise-salt", hashlib.sha256).digest()


def compute_subject(sector: str, account_id: int) -> str:
    digest = hmac.new(_salt(), f"{sector}\x00{account_id}".encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


#: Per-process cache of (sector, account id) → the account's own subject. An account's own
#: subject in a sector never changes once recorded (merges add alias rows, they never rewrite it).
_CACHE_LIMIT = 100_000


def subject_for(client: Client, account_id: int) -> str:
    """The ``sub`` this client sees for the account, recorded in the subject mapping."""
    sector = sector_of(client)
    cache = current_app.extensions.setdefault("tessera_subjects", {})
    cached = cache.get((sector, account_id))
    if cached is not None:
        return cached
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    existing = db.session.scalar(
        db.select(SubjectMapping.sub).filter_by(sector=sector, account_id=account_id, alias=False)
    )
    if existing:
        cache[(sector, account_id)] = existing
        return existing
    sub = compute_subject(sector, account_id)
    # A concurrent request may record the same (deterministic) subject: ignore that conflict.
    # Cached only once a later call finds the row committed.
    insert_ignoring_conflicts(SubjectMapping, sector=sector, account_id=account_id, sub=sub, alias=False)
    return sub


def accounts_for_subjects(client: Client, subs: list[str]) -> dict[str, int]:
    """The accounts these subjects (held by ``client``) name, in one query: the subjects that name one."""
    rows = db.session.execute(
        db.select(SubjectMapping.sub, SubjectMapping.account_id).where(
            SubjectMapping.sector == sector_of(client), SubjectMapping.sub.in_(set(subs)))
    )
    return {sub: account_id for sub, account_id in rows}
