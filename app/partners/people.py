"""Whom a partner client reaches: its data contract, the people its subjects name under the
consent rule (``app.partners.contracts``), and the actor its calls are audited as.

A subject of an account merged away names the survivor (alias rows); a token obtained on one
person's behalf reaches that person only; an unknown person and one who did not agree to share
get the same not-found answer. Every refusal is a ``PartnerError`` with a stable reason.
"""

from __future__ import annotations

from sqlalchemy.orm import selectinload

from app.accounts.models import Account
from app.extensions import db
from app.oidc.models import Client
from app.oidc.subjects import accounts_for_subjects
from app.partners.contracts import Contract, PartnerError, accessible_accounts, contract_for, not_found


def audit_actor(client: Client) -> str:
    """The actor a client's partner API calls are audited as."""
    return f"client:{client.client_id}"


def require_contract(client: Client) -> Contract:
    contract = contract_for(client)
    if contract is None:
        raise PartnerError(403, "no_contract", "No data contract", "this client has no data contract with the hub")
    return contract


def person(client: Client, sub: str, bound_account_id: int | None) -> Account:
    """The active account ``sub`` names for this client, if the person agreed to share with it.
    A subject of an account merged away names the survivor (alias rows). ``bound_account_id``:
    a token obtained on one person's behalf reaches that person only."""
    account = people(client, [sub], bound_account_id).get(sub)
    if account is None:
        raise not_found()
    return account


def people(client: Client, subs: list[str], bound_account_id: int | None) -> dict[str, Account]:
    """``person`` for many subjects at once, in three queries (subjects, accounts with their
    identities, consents): the subjects that name a reachable person, with their accounts."""
    wanted = [s for s in subs if isinstance(s, str) and len(s) <= 64]
    ids = accounts_for_subjects(client, wanted) if wanted else {}
    if bound_account_id:
        ids = {sub: account_id for sub, account_id in ids.items() if account_id == bound_account_id}
    if not ids:
        return {}
    accounts = {a.id: a for a in db.session.scalars(
        db.select(Account).where(Account.id.in_(set(ids.values()))).options(selectinload(Account.identities)))}
    reachable = accessible_accounts(client, {a.id for a in accounts.values() if a.is_active})
    return {sub: accounts[account_id] for sub, account_id in ids.items() if account_id in reachable}
