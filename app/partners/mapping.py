"""Subject mapping ("user-ID to OpenID mapping"): what a ``sub`` a client holds is now."""

from __future__ import annotations

from app.accounts.models import Account
from app.extensions import db
from app.oidc.models import Client, SubjectMapping
from app.oidc.subjects import sector_of, subject_for
from app.partners.relationship import related_accounts


def resolve_subject(client: Client, sub: str) -> dict | None:
    """``{"sub", "status", "current_sub"}`` for a subject of the client's sector, or None when the
    sector never had this subject. ``status``: active (current_sub == sub), merged (the subject
    now names another account's subject, ``current_sub`` as this client sees it), or closed.
    A subject of a person not related to the client or its tenant (a ``public`` subject another
    tenant's site handed out) is unknown here, like one never handed out."""
    mapping = db.session.scalar(db.select(SubjectMapping).filter_by(sector=sector_of(client), sub=sub))
    if mapping is None:
        return None
    account = db.session.get(Account, mapping.account_id)
    seen = {account.id}
    while account.status == "merged" and account.merged_into_id and account.merged_into_id not in seen:
        account = db.session.get(Account, account.merged_into_id)  # chains: A into B into C
        seen.add(account.id)
    if not related_accounts(client, seen):
        return None
    if account.status != "active":
        return {"sub": sub, "status": "closed"}
    current = subject_for(client, account.id)
    db.session.commit()
    return {"sub": sub, "status": "active" if current == sub else "merged", "current_sub": current}
