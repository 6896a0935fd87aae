"""What the core announces when an account's identities change: the identity-derived claims (the
primary live phone and email a client reads, OIDC Core 5.1) before and after the change, and a
``claims_changed`` signal (app/signals.py) for the ones that differ. The receivers (the partner
change log and claims-changed events) are features; this module only announces."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.accounts.models import Account
from app.extensions import db
from app.oidc.claims import SCOPE_CLAIMS, claim_value
from app.signals import claims_changed

#: A tenant's custom attribute NAME is the claim ``attributes.NAME`` (partner contracts, the change log).
ATTRIBUTE_PREFIX = "attributes."

#: The claims clients see that come from an account's identities (OIDC Core 5.1): its primary
#: live phone and email (``Account.identity``).
IDENTITY_CLAIMS = SCOPE_CLAIMS["phone"] + SCOPE_CLAIMS["email"]


def identity_claims(account_id: int) -> dict:
    """The identity-derived claims of an account as they stand in this transaction, as a client
    would read them (``oidc.claims.claim_value``)."""
    db.session.flush()
    account = db.session.get(Account, account_id)
    db.session.expire(account, ["identities"])  # reloaded: identities were added or released meanwhile
    return {claim: claim_value(account, claim) for claim in IDENTITY_CLAIMS}


def attribute_claims(names) -> list[str]:
    """The claim names of a tenant's custom attributes."""
    return [f"{ATTRIBUTE_PREFIX}{n}" for n in names]


def announce(account_id: int, claims, *, source: str, client=None, tenant_id: int | None = None) -> None:
    """Send ``claims_changed`` for the claims of ``account_id`` that changed (nothing when none did),
    in the caller's transaction."""
    claims = sorted(set(claims))
    if claims:
        claims_changed.send(account_id, claims=claims, source=source, client=client, tenant_id=tenant_id)


@contextmanager
def announcing_identity_claims(*account_ids: int | None, source: str, client=None) -> Iterator[list[str]]:
    """Around a change of identities (bind, rebind, unbind, a verified email, a recycled number, a
    legacy sync): the identity-derived claims that changed on each account are announced, one
    ``claims_changed`` per account. The list it yields takes other claims the caller changed on
    the first account meanwhile (profile claims), announced with them. In the caller's transaction."""
    accounts = [account_id for account_id in dict.fromkeys(account_ids) if account_id]
    before = {account_id: identity_claims(account_id) for account_id in accounts}
    also: list[str] = []
    yield also
    for account_id, old in before.items():
        new = identity_claims(account_id)
        changed = {claim for claim in new if new[claim] != old[claim]}
        if account_id == accounts[0]:
            changed.update(also)
        announce(account_id, changed, source=source, client=client)
