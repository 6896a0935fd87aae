"""Partner data service: read (one-way), write (two-way), look up and register people for a
client, under its data contract and the person's consent. Every read and write is audited;
every refusal is a ``PartnerError`` with a stable reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections import defaultdict

from flask import current_app
from sqlalchemy.orm import selectinload

from app import audit
from app.accounts.claims import ATTRIBUTE_PREFIX, attribute_claims
from app.accounts.identifiers import normalize_phone
from app.accounts.locking import lock_account
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.profile import create_account
from app.bulk_import.models import AccountAttributes
from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.oidc.authorization import is_trusted
from app.oidc.clients import get_client_by_pk
from app.oidc.models import Client, Consent
from app.oidc.subjects import accounts_for_subjects, subject_for
from app.partners.changes import namespace_of, note_write
from app.partners.contracts import (
    ATTRIBUTE_NAME_RE, CONSENT_SCOPE, READABLE, WRITABLE, Contract, PartnerError,
    accessible_accounts, contract_for, may_access, not_found,
)
from app.partners.models import AccountAddress, ClaimProvenance
from app.partners.relationship import related_clause
from app.security import utcnow
from app.tenants.models import Tenant

ADDRESS_FIELDS = ("formatted", "street_address", "locality", "region", "postal_code", "country")
ENTRY_FIELDS = ("label", *ADDRESS_FIELDS)
MAX_ADDRESSES = 20
MAX_ATTRIBUTES = 50
MAX_BATCH = 100
PHONE_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def _actor(client: Client) -> str:
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


# --- reading --------------------------------------------------------------------------------------
def _attributes_row(account_id: int, tenant_id: int) -> AccountAttributes | None:
    return db.session.scalar(db.select(AccountAttributes).filter_by(account_id=account_id, tenant_id=tenant_id))


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


def _address_entry(row: AccountAddress) -> dict:
    return {"id": row.uid, **{f: row.value.get(f) for f in ENTRY_FIELDS}, "etag": address_etag(row),
            "provenance": _provenance(row.source, row.client_id, row.written_at)}


def address_etag(row: AccountAddress) -> str:
    return f'"{row.uid}.{row.version}"'


def _addresses(account_id: int) -> list[AccountAddress]:
    return list(db.session.scalars(db.select(AccountAddress).filter_by(account_id=account_id).order_by(AccountAddress.id)))


def _claim_values(account: Account, data: AccountData, allowed, with_attributes: bool) -> dict:
    """The values of the claims ``allowed`` lets through (``None`` when unset); ``attributes``
    (the client's tenant's custom attributes ``allowed`` lets through) when ``with_attributes``."""
    values = {}
    for claim in (*PROFILE_CLAIMS, "address"):
        if allowed(claim):
            values[claim] = getattr(account, claim)
    if allowed("addresses"):
        values["addresses"] = [_address_entry(row) for row in data.addresses[account.id]]
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
    audit.record("partner.read", account_id=account.id, actor=_actor(client), client_id=client.id,
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
                                        "batch": True} for u in users], actor=_actor(client), client_id=client.id)
    db.session.commit()
    return {"users": users, "not_found": missing}


# --- writing --------------------------------------------------------------------------------------
def _invalid(detail: str) -> PartnerError:
    return PartnerError(422, "invalid_value", "Invalid value", detail)


def _string(value, claim: str, max_length: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise _invalid(f"{claim} is a string of at most {max_length} characters, or null")
    return value


def _address_value(value, fields: tuple[str, ...], what: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(fields):
        raise _invalid(f"{what} is an object with the members {', '.join(fields)}")
    cleaned = {f: _string(value.get(f), f"{what}.{f}", 500) for f in fields}
    cleaned = {k: v for k, v in cleaned.items() if v is not None}
    return cleaned or None


def _attribute_value(name: str, value):
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            raise _invalid(f"attributes.{name} must be a string, number, boolean or null")
        return value
    if isinstance(value, str) and len(value) <= 1000:
        return value
    raise _invalid(f"attributes.{name} must be a string (at most 1000 characters), number, boolean or null")


def _check_writable(contract: Contract, claim: str) -> None:
    if not (claim in READABLE or claim in WRITABLE or claim.startswith(ATTRIBUTE_PREFIX)):
        raise PartnerError(422, "unknown_claim", "Unknown claim", f"{claim!r} is not a claim of the partner API")
    if not contract.can_write(claim):
        raise PartnerError(403, "claim_not_writable", "Claim not writable",
                           f"{claim!r} is not in this client's write contract")


def _check_if_match(if_match: str | None, current: str) -> None:
    if not if_match or if_match.strip() == "*":
        raise PartnerError(428, "if_match_required", "Precondition required",
                           "send If-Match with the ETag of the representation you are changing")
    offered = [tag.strip() for tag in if_match.split(",")]
    if current not in offered:
        # RFC 9110 13.1.1: If-Match fails: someone else changed the data since it was read.
        raise PartnerError(412, "etag_mismatch", "Precondition failed",
                           "the data changed since it was read: read it again and reapply the change")


def _lock(account: Account) -> Account:
    locked = lock_account(account.id)
    if locked is None or not locked.is_active:
        raise not_found()
    return locked


def patch_user(client: Client, sub: str, bound_account_id: int | None, changes, if_match: str | None) -> dict:
    """Apply a JSON merge patch (RFC 7396) of claims in the write contract, if ``if_match`` is the
    current ETag; nothing is written when any member is refused."""
    contract = require_contract(client)
    if not isinstance(changes, dict) or not changes:
        raise PartnerError(400, "invalid_request", "Invalid request", "the body is a non-empty JSON object of claims")
    profile, attributes = {}, {}
    for claim, value in changes.items():
        if claim == "attributes":
            if not isinstance(value, dict) or not value:
                raise _invalid("attributes is a non-empty object of attribute names to values (null removes)")
            for name, attribute in value.items():
                if not ATTRIBUTE_NAME_RE.match(name):
                    raise _invalid(f"bad attribute name {name!r}")
                _check_writable(contract, ATTRIBUTE_PREFIX + name)
                attributes[name] = _attribute_value(name, attribute)
            continue
        _check_writable(contract, claim)
        if claim == "addresses":
            raise PartnerError(422, "use_addresses_resource", "Use the addresses resource",
                               "address book entries are added, changed and removed at /api/users/{sub}/addresses")
        if claim == "address":
            profile[claim] = _address_value(value, ADDRESS_FIELDS, "address")
        else:
            profile[claim] = _string(value, claim, Account.__table__.c[claim].type.length)
    if if_match is None or if_match.strip() == "*":
        _check_if_match(if_match, "")
    account = _lock(person(client, sub, bound_account_id))
    _check_if_match(if_match, user_etag(client, contract, account))

    changed = [claim for claim, value in profile.items() if getattr(account, claim) != value]
    for claim in changed:
        setattr(account, claim, profile[claim])
    changed_attributes = []
    if attributes:
        row = _attributes_row(account.id, client.tenant_id)
        data = dict((row.data if row else None) or {})
        for name, value in attributes.items():
            if data.get(name) != value or (value is None and name in data):
                changed_attributes.append(name)
                if value is None:
                    data.pop(name, None)
                else:
                    data[name] = value
        if len(data) > MAX_ATTRIBUTES:
            db.session.rollback()
            raise _invalid(f"a person has at most {MAX_ATTRIBUTES} custom attributes per tenant")
        if changed_attributes:
            if row is None:
                db.session.add(AccountAttributes(account_id=account.id, tenant_id=client.tenant_id, data=data))
            else:
                row.data = data
    note_write(account.id, changed, source="partner", client=client)
    note_write(account.id, attribute_claims(changed_attributes), source="partner", client=client, tenant_id=client.tenant_id)
    db.session.flush()
    audit.record("partner.write", account_id=account.id, actor=_actor(client), client_id=client.id,
                 claims=sorted(changed + attribute_claims(changed_attributes)))
    body = representation(client, contract, account)
    db.session.commit()
    return body


# --- addresses ------------------------------------------------------------------------------------
def _require(contract: Contract, claim: str, write: bool) -> None:
    allowed = contract.can_write(claim) if write else contract.can_read(claim)
    if not allowed:
        reason = "claim_not_writable" if write else "claim_not_readable"
        raise PartnerError(403, reason, "Outside the data contract",
                           f"{claim!r} is not in this client's {'write' if write else 'read'} contract")


def list_addresses(client: Client, sub: str, bound_account_id: int | None) -> list[dict]:
    contract = require_contract(client)
    _require(contract, "addresses", write=False)
    account = person(client, sub, bound_account_id)
    entries = [_address_entry(row) for row in _addresses(account.id)]
    audit.record("partner.read", account_id=account.id, actor=_actor(client), client_id=client.id, claims=["addresses"])
    db.session.commit()
    return entries


def add_address(client: Client, sub: str, bound_account_id: int | None, value) -> dict:
    contract = require_contract(client)
    _require(contract, "addresses", write=True)
    entry = _address_value(value, ENTRY_FIELDS, "an address")
    if not entry:
        raise _invalid("an address needs at least one member")
    account = _lock(person(client, sub, bound_account_id))
    if len(_addresses(account.id)) >= MAX_ADDRESSES:
        db.session.rollback()
        raise PartnerError(422, "too_many_addresses", "Too many addresses", f"a person has at most {MAX_ADDRESSES} addresses")
    row = AccountAddress(uid=secrets.token_urlsafe(16), account_id=account.id, value=entry, source="partner", client_id=client.id)
    db.session.add(row)
    note_write(account.id, ["addresses"], source="partner", client=client)
    audit.record("partner.write", account_id=account.id, actor=_actor(client), client_id=client.id,
                 claims=["addresses"], address=row.uid, action="add")
    db.session.commit()
    return _address_entry(row)


def _address_of(account: Account, address_id: str) -> AccountAddress:
    row = db.session.scalar(db.select(AccountAddress).filter_by(uid=address_id, account_id=account.id))
    if row is None:
        raise PartnerError(404, "address_not_found", "Unknown address", "this person has no such address")
    return row


def replace_address(client: Client, sub: str, bound_account_id: int | None, address_id: str, value,
                    if_match: str | None) -> dict:
    contract = require_contract(client)
    _require(contract, "addresses", write=True)
    entry = _address_value(value, ENTRY_FIELDS, "an address")
    if not entry:
        raise _invalid("an address needs at least one member")
    if if_match is None or if_match.strip() == "*":
        _check_if_match(if_match, "")
    account = _lock(person(client, sub, bound_account_id))
    row = _address_of(account, address_id)
    _check_if_match(if_match, address_etag(row))
    if row.value != entry:
        row.value, row.version = entry, row.version + 1
        row.source, row.client_id, row.written_at = "partner", client.id, utcnow()
        note_write(account.id, ["addresses"], source="partner", client=client)
        audit.record("partner.write", account_id=account.id, actor=_actor(client), client_id=client.id,
                     claims=["addresses"], address=row.uid, action="replace")
    db.session.commit()
    return _address_entry(row)


def delete_address(client: Client, sub: str, bound_account_id: int | None, address_id: str, if_match: str | None) -> None:
    contract = require_contract(client)
    _require(contract, "addresses", write=True)
    if if_match is None or if_match.strip() == "*":
        _check_if_match(if_match, "")
    account = _lock(person(client, sub, bound_account_id))
    row = _address_of(account, address_id)
    _check_if_match(if_match, address_etag(row))
    db.session.delete(row)
    note_write(account.id, ["addresses"], source="partner", client=client)
    audit.record("partner.write", account_id=account.id, actor=_actor(client), client_id=client.id,
                 claims=["addresses"], address=address_id, action="delete")
    db.session.commit()


# --- lookup and register-on-write -----------------------------------------------------------------
def phone_hash(salt: str, phone: str) -> str:
    """The salted hash a client may send instead of a phone number: hex SHA-256 of salt || E.164."""
    return hashlib.sha256((salt + phone).encode("utf-8")).hexdigest()


def _phone_candidates(client: Client):
    """(phone, account id) of the people this client may look up by hash: those related to it or
    its tenant (``relationship``) who consented to it, or for a first-party client all those
    related (a hash cannot be reversed, so the candidates are hashed: the cost grows with the
    people related to the client, never with the hub)."""
    query = db.select(Identity.value, Identity.account_id).where(
        Identity.kind == "phone", Identity.namespace == "", Identity.released_at.is_(None),
        related_clause(client, Identity.account_id))
    if not is_trusted(client):
        query = query.join(Consent, Consent.account_id == Identity.account_id).where(Consent.client_id == client.id)
    return db.session.execute(query).all()


def lookup(client: Client, body) -> str:
    """The sub this client sees for the person a shared identifier names, if that person agreed
    to share with it; one not-found answer for every other case."""
    contract = require_contract(client)
    if not isinstance(body, dict) or len(body) != 1 or not isinstance(next(iter(body.values())), str) \
            or next(iter(body)) not in ("phone", "phone_hash"):
        raise PartnerError(400, "invalid_request", "Invalid request", "send exactly one of 'phone' or 'phone_hash'")
    account_id = None
    if "phone" in body:
        try:
            phone = normalize_phone(body["phone"])
        except InvalidInput as exc:
            raise PartnerError(422, "invalid_phone", "Invalid phone number", exc.detail) from None
        account_id = db.session.scalar(db.select(Identity.account_id).filter_by(
            kind="phone", namespace="", value=phone, released_at=None))
    else:
        wanted = body["phone_hash"].lower()
        if not PHONE_HASH_RE.match(wanted):
            raise PartnerError(422, "invalid_phone_hash", "Invalid phone hash", "phone_hash is 64 hex digits")
        for phone, candidate in _phone_candidates(client):
            if hmac.compare_digest(phone_hash(contract.lookup_salt, phone), wanted):
                account_id = candidate
                break
    account = db.session.get(Account, account_id) if account_id else None
    found = account is not None and account.is_active and may_access(client, account.id)
    audit.record("partner.lookup", account_id=account.id if found else None, actor=_actor(client),
                 client_id=client.id, by=next(iter(body)), found=found)
    if not found:
        db.session.commit()
        raise not_found()
    sub = subject_for(client, account.id)
    db.session.commit()
    return sub


def register(client: Client, body) -> str:
    """Register-on-write (seed 003): create the account of a phone number that is not registered
    yet, when the client's tenant allows it, and hand back its sub. The number must meet the
    hub's registration rule (a valid number, normalized to E.164). The tenant's agreement to let
    its partners sign people up stands for the person's consent to share with this client.

    A number someone already holds is one 409, byte for byte, whoever holds it (a person related
    to this client or a stranger to its tenant): the existing account is never attached to, given
    a consent or a subject in this client's sector, or written. Whether the partner may then
    reach that person is the lookup's answer, under the relationship rule."""
    contract = require_contract(client)
    del contract
    tenant = db.session.get(Tenant, client.tenant_id)  # fresh: the cached client's tenant may be older
    if not (tenant.policy or {}).get("allow_partner_registration"):
        raise PartnerError(403, "registration_disabled", "Registration not allowed",
                           "this client's tenant does not let partners register people")
    if not isinstance(body, dict) or set(body) != {"phone"} or not isinstance(body["phone"], str):
        raise PartnerError(400, "invalid_request", "Invalid request", "send {\"phone\": \"+<E.164 number>\"}")
    try:
        phone = normalize_phone(body["phone"])
    except InvalidInput as exc:
        raise PartnerError(422, "invalid_phone", "Invalid phone number", exc.detail) from None
    taken = PartnerError(409, "already_registered", "Already registered",
                         "this phone number belongs to an account: look it up instead")
    if db.session.scalar(db.select(Identity.id).filter_by(kind="phone", namespace="", value=phone, released_at=None)):
        # Audited without the holder: nothing about that account is recorded for this client.
        audit.record("partner.register_refused", actor=_actor(client), client_id=client.id, reason="taken")
        db.session.commit()
        raise taken
    try:
        # The partner vouches for the number; the hub has not verified it with a code.
        account = create_account(phone=phone, verified=False)
    except Conflict:
        raise taken from None
    db.session.add(Consent(account_id=account.id, client_id=client.id, scope=CONSENT_SCOPE))
    note_write(account.id, ["phone_number"], source="registration", client=client)
    audit.record("partner.registered", account_id=account.id, actor=_actor(client), client_id=client.id)
    audit.record("consent.granted", account_id=account.id, actor=_actor(client), client_id=client.id,
                 scope=CONSENT_SCOPE, via="partner_registration")
    sub = subject_for(client, account.id)
    db.session.commit()
    return sub
