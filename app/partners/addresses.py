"""A person's address book (``/api/users/{sub}/addresses``): a client lists, adds, replaces and
deletes entries under its data contract (the ``addresses`` claim).

A person has at most ``MAX_ADDRESSES`` entries; replacing or deleting one needs ``If-Match`` with
that entry's ETag; every change needs the level of the contract's ``write_acr``
(``Contract.require_write_assurance``). Every read and change is audited and every change noted for
subscribed partners (``app.partners.changes``).
"""

from __future__ import annotations

import secrets

from app import audit
from app.accounts.models import Account
from app.extensions import db
from app.oidc.models import Client
from app.partners.changes import note_write
from app.partners.contracts import Contract, PartnerError
from app.partners.models import AccountAddress
from app.partners.people import audit_actor, person, require_contract
from app.partners.reads import ENTRY_FIELDS, address_entry, address_etag
from app.partners.writes import address_value, check_if_match, invalid_value, lock_person
from app.security import utcnow

MAX_ADDRESSES = 20


def _addresses(account_id: int) -> list[AccountAddress]:
    return list(db.session.scalars(db.select(AccountAddress).filter_by(account_id=account_id).order_by(AccountAddress.id)))


def _require(contract: Contract, claim: str, write: bool) -> None:
    allowed = contract.can_write(claim) if write else contract.can_read(claim)
    if not allowed:
        reason = "claim_not_writable" if write else "claim_not_readable"
        raise PartnerError(403, reason, "Outside the data contract",
                           f"{claim!r} is not in this client's {'write' if write else 'read'} contract")


def _require_write(client: Client, token_level: int) -> None:
    """A change of the address book: in the write contract, by a token whose authentication
    (``token_level``) reaches the contract's ``write_acr``."""
    contract = require_contract(client)
    contract.require_write_assurance(token_level)
    _require(contract, "addresses", write=True)


def list_addresses(client: Client, sub: str, bound_account_id: int | None) -> list[dict]:
    contract = require_contract(client)
    _require(contract, "addresses", write=False)
    account = person(client, sub, bound_account_id)
    entries = [address_entry(row) for row in _addresses(account.id)]
    audit.record("partner.read", account_id=account.id, actor=audit_actor(client), client_id=client.id, claims=["addresses"])
    db.session.commit()
    return entries


def add_address(client: Client, sub: str, bound_account_id: int | None, value, *, token_level: int) -> dict:
    _require_write(client, token_level)
    entry = address_value(value, ENTRY_FIELDS, "an address")
    if not entry:
        raise invalid_value("an address needs at least one member")
    account = lock_person(person(client, sub, bound_account_id))
    if len(_addresses(account.id)) >= MAX_ADDRESSES:
        db.session.rollback()
        raise PartnerError(422, "too_many_addresses", "Too many addresses", f"a person has at most {MAX_ADDRESSES} addresses")
    row = AccountAddress(uid=secrets.token_urlsafe(16), account_id=account.id, value=entry, source="partner", client_id=client.id)
    db.session.add(row)
    note_write(account.id, ["addresses"], source="partner", client=client)
    audit.record("partner.write", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                 claims=["addresses"], address=row.uid, action="add")
    db.session.commit()
    return address_entry(row)


def _address_of(account: Account, address_id: str) -> AccountAddress:
    row = db.session.scalar(db.select(AccountAddress).filter_by(uid=address_id, account_id=account.id))
    if row is None:
        raise PartnerError(404, "address_not_found", "Unknown address", "this person has no such address")
    return row


def replace_address(client: Client, sub: str, bound_account_id: int | None, address_id: str, value,
                    if_match: str | None, *, token_level: int) -> dict:
    _require_write(client, token_level)
    entry = address_value(value, ENTRY_FIELDS, "an address")
    if not entry:
        raise invalid_value("an address needs at least one member")
    if if_match is None or if_match.strip() == "*":
        check_if_match(if_match, "")
    account = lock_person(person(client, sub, bound_account_id))
    row = _address_of(account, address_id)
    check_if_match(if_match, address_etag(row))
    if row.value != entry:
        row.value, row.version = entry, row.version + 1
        row.source, row.client_id, row.written_at = "partner", client.id, utcnow()
        note_write(account.id, ["addresses"], source="partner", client=client)
        audit.record("partner.write", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                     claims=["addresses"], address=row.uid, action="replace")
    db.session.commit()
    return address_entry(row)


def delete_address(client: Client, sub: str, bound_account_id: int | None, address_id: str, if_match: str | None, *,
                   token_level: int) -> None:
    _require_write(client, token_level)
    if if_match is None or if_match.strip() == "*":
        check_if_match(if_match, "")
    account = lock_person(person(client, sub, bound_account_id))
    row = _address_of(account, address_id)
    check_if_match(if_match, address_etag(row))
    db.session.delete(row)
    note_write(account.id, ["addresses"], source="partner", client=client)
    audit.record("partner.write", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                 claims=["addresses"], address=address_id, action="delete")
    db.session.commit()
