"""Partner reads (one-way): a person as a client may see them, alone or in batches.

A representation holds the claims of the client's read contract, who wrote each, and a strong
ETag over every value the client may read or write.

Every read is audited (``partner.read``). A batch read of up to ``MAX_BATCH`` people costs what a
read of one does: their addresses, attributes and provenance are read in one query each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import defaultdict

from flask import current_app

from app import audit
from app.accounts.claims import ATTRIBUTE_PREFIX
from app.accounts.models import PROFILE_CLAIMS, Account
from app.bulk_import.models import AccountAttributes
from app.extensions import db
from app.oidc.clients import get_client_by_pk
from app.oidc.models import Client
from app.oidc.subjects import subject_for
from app.partners.changes import namespace_of
from app.partners.contracts import Contract, PartnerError
from app.partners.models import AccountAddress, ClaimProvenance
from app.partners.people import audit_actor, people, person, require_contract

ADDRESS_FIELDS = ("formatted", "street_address", "locality", "region", "postal_code", "country")
ENTRY_FIELDS = ("label", *ADDRESS_FIELDS)
MAX_BATCH = 100


class AccountData:
    """Addresses, tenant attributes and provenance of a set of accounts as ``client`` reads them,
    one query each for the whole set: a batch read of 100 people costs what a read of one does."""

    def __init__(self, client: Client, contract: Contract, account_ids):
        ids = list(account_ids)
        self.addresses: dict[int, list[AccountAddress]] = defaultdict(list)
        self.attributes: dict[int, AccountAttributes] = {}
        self.provenance: dict[int, list[ClaimProvenance]] = defaultdict(list)
        if contract.can_read("addresses") or contract.can_write("addresses"):
            for row in db.session.scalars(db.select(AccountAddress).where(AccountAddress.account_id.in_(ids))
                                          .order_by(AccountAddress.id)):
                self.addresses[row.account_id].append(row)
        if contract.has_attributes:
            self.attributes = {row.account_id: row for row in db.session.scalars(db.select(AccountAttributes).where(
                AccountAttributes.account_id.in_(ids), AccountAttributes.tenant_id == client.tenant_id))}
        for row in db.session.scalars(db.select(ClaimProvenance).where(
                ClaimProvenance.account_id.in_(ids), ClaimProvenance.namespace.in_(["", namespace_of(client.tenant_id)]))):
            self.provenance[row.account_id].append(row)


def _provenance(source: str | None, client_pk: int | None, at) -> dict:
    writer = get_client_by_pk(client_pk) if client_pk else None
    return {"source": source or "hub", "client_id": writer.client_id if writer else None,
            "at": at.isoformat() + "Z" if at else None}


def address_entry(row: AccountAddress) -> dict:
    """An address book entry as a client reads it: its members, its ETag and who wrote it."""
    return {"id": row.uid, **{f: row.value.get(f) for f in ENTRY_FIELDS}, "etag": address_etag(row),
            "provenance": _provenance(row.source, row.client_id, row.written_at)}


def address_etag(row: AccountAddress) -> str:
    return f'"{row.uid}.{row.version}"'


def _claim_values(account: Account, data: AccountData, allowed, with_attributes: bool) -> dict:
    """The values of the claims ``allowed`` lets through (``None`` when unset); ``attributes``
    (the client's tenant's custom attributes ``allowed`` lets through) when ``with_attributes``."""
    values = {}
    for claim in (*PROFILE_CLAIMS, "address"):
        if allowed(claim):
            values[claim] = getattr(account, claim)
    if allowed("addresses"):
        values["addresses"] = [address_entry(row) for row in data.addresses[account.id]]
    phone, email = account.identity("phone"), account.identity("email")
    for claim, identity in (("phone_number", phone), ("email", email)):
        if allowed(claim):
            values[claim] = identity.value if identity else None
        if allowed(f"{claim}_verified"):
            values[f"{claim}_verified"] = bool(identity and identity.verified)
    if with_attributes:
        row = data.attributes.get(account.id)
        values["attributes"] = {k: v for k, v in ((row.data if row else None) or {}).items() if allowed(ATTRIBUTE_PREFIX + k)}
    return values


def user_etag(client: Client, contract: Contract, account: Account, data: AccountData | None = None) -> str:
    """A strong ETag over every value this client may read or write (keyed, so it reveals nothing
    about write-only values): any change another writer makes to them changes it."""
    data = data or AccountData(client, contract, [account.id])
    state = _claim_values(account, data, lambda c: contract.can_read(c) or contract.can_write(c), contract.has_attributes)
    for entry in state.get("addresses", []):
        entry.pop("provenance")
    canonical = json.dumps({"client": client.client_id, "state": state}, sort_keys=True, default=str)
    key = current_app.config["SECRET_KEY"].encode("utf-8")
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()[:18]
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"'


def representation(client: Client, contract: Contract, account: Account, data: AccountData | None = None) -> dict:
    """The person as this client may see them: the claims of its read contract and who wrote each.
    ``data``: the account's addresses, attributes and provenance if already read (batch reads);
    read now otherwise (after a write: what was just written)."""
    data = data or AccountData(client, contract, [account.id])
    claims = _claim_values(account, data, contract.can_read,
                           any(c.startswith(ATTRIBUTE_PREFIX) for c in contract.read))
    provenance = {}
    for row in data.provenance[account.id]:
        if row.claim in claims or (row.claim.startswith(ATTRIBUTE_PREFIX)
                                   and row.claim[len(ATTRIBUTE_PREFIX):] in claims.get("attributes", {})):
            provenance[row.claim] = _provenance(row.source, row.client_id, row.at)
    return {"sub": subject_for(client, account.id), "claims": claims, "provenance": provenance,
            "etag": user_etag(client, contract, account, data)}


def read_user(client: Client, sub: str, bound_account_id: int | None) -> dict:
    contract = require_contract(client)
    account = person(client, sub, bound_account_id)
    body = representation(client, contract, account)
    audit.record("partner.read", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                 claims=sorted(body["claims"]))
    db.session.commit()
    return body


def batch_read(client: Client, subs, bound_account_id: int | None) -> dict:
    contract = require_contract(client)
    if not isinstance(subs, list) or not subs or len(subs) > MAX_BATCH or not all(isinstance(s, str) for s in subs):
        raise PartnerError(400, "invalid_request", "Invalid request", f"'subs' is a list of 1 to {MAX_BATCH} subjects")
    wanted = list(dict.fromkeys(subs))
    found = people(client, wanted, bound_account_id)
    data = AccountData(client, contract, {account.id for account in found.values()})
    users, missing = [], []
    for sub in wanted:
        account = found.get(sub)
        if account is None:
            missing.append(sub)
            continue
        body = representation(client, contract, account, data)
        users.append({**body, "requested_sub": sub})
    audit.record_many("partner.read", [{"account_id": found[u["requested_sub"]].id, "claims": sorted(u["claims"]),
                                        "batch": True} for u in users], actor=audit_actor(client), client_id=client.id)
    db.session.commit()
    return {"users": users, "not_found": missing}
