"""Finding a person by a phone number or its salted hash, and register-on-write: creating the
account of a phone number nobody holds yet.

A lookup has one not-found answer for every case but a person who agreed to share with the
client; a registration never attaches to, consents for or writes an existing account.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from app import audit
from app.accounts.identifiers import normalize_phone
from app.accounts.models import Account, Identity
from app.accounts.profile import create_account
from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.oidc.authorization import is_trusted
from app.oidc.models import Client, Consent
from app.oidc.subjects import subject_for
from app.partners.changes import note_write
from app.partners.contracts import CONSENT_SCOPE, PartnerError, may_access, not_found
from app.partners.people import audit_actor, require_contract
from app.partners.relationship import related_clause
from app.tenants.models import Tenant

PHONE_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


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
    audit.record("partner.lookup", account_id=account.id if found else None, actor=audit_actor(client),
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
        audit.record("partner.register_refused", actor=audit_actor(client), client_id=client.id, reason="taken")
        db.session.commit()
        raise taken
    try:
        # The partner vouches for the number; the hub has not verified it with a code.
        account = create_account(phone=phone, verified=False)
    except Conflict:
        raise taken from None
    db.session.add(Consent(account_id=account.id, client_id=client.id, scope=CONSENT_SCOPE))
    note_write(account.id, ["phone_number"], source="registration", client=client)
    audit.record("partner.registered", account_id=account.id, actor=audit_actor(client), client_id=client.id)
    audit.record("consent.granted", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                 scope=CONSENT_SCOPE, via="partner_registration")
    sub = subject_for(client, account.id)
    db.session.commit()
    return sub
