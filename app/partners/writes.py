"""Partner writes (two-way): a JSON merge patch (RFC 7396) of the claims in a client's write
contract, and the value and ``If-Match`` checks the address book shares.

A write is all or nothing: nothing is written when any member is refused. It needs ``If-Match``
with the current ETag (428 without one, 412 when another writer changed the data since it was
read), and, under a contract with ``write_acr``, a token on the person's behalf whose
authentication reaches that level (401 ``insufficient_user_authentication``, RFC 9470). Every write is audited (``partner.write``) and noted for subscribed partners
(``app.partners.changes``).
"""

from __future__ import annotations

from app import audit
from app.accounts.claims import ATTRIBUTE_PREFIX, attribute_claims
from app.accounts.locking import lock_account
from app.accounts.models import Account
from app.bulk_import.models import AccountAttributes
from app.extensions import db
from app.oidc.models import Client
from app.partners.changes import note_write
from app.partners.contracts import ATTRIBUTE_NAME_RE, READABLE, WRITABLE, Contract, PartnerError, not_found
from app.partners.people import audit_actor, person, require_contract
from app.partners.reads import ADDRESS_FIELDS, representation, user_etag

MAX_ATTRIBUTES = 50


def _attributes_row(account_id: int, tenant_id: int) -> AccountAttributes | None:
    return db.session.scalar(db.select(AccountAttributes).filter_by(account_id=account_id, tenant_id=tenant_id))


def invalid_value(detail: str) -> PartnerError:
    """The 422 refusal of a value the partner API does not accept."""
    return PartnerError(422, "invalid_value", "Invalid value", detail)


def _string(value, claim: str, max_length: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise invalid_value(f"{claim} is a string of at most {max_length} characters, or null")
    return value


def address_value(value, fields: tuple[str, ...], what: str) -> dict | None:
    """An address object of ``fields`` (strings of at most 500 characters, empty members dropped);
    None for null or an object with nothing left."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(fields):
        raise invalid_value(f"{what} is an object with the members {', '.join(fields)}")
    cleaned = {f: _string(value.get(f), f"{what}.{f}", 500) for f in fields}
    cleaned = {k: v for k, v in cleaned.items() if v is not None}
    return cleaned or None


def _attribute_value(name: str, value):
    if value is None or isinstance(value, bool | int | float):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            raise invalid_value(f"attributes.{name} must be a string, number, boolean or null")
        return value
    if isinstance(value, str) and len(value) <= 1000:
        return value
    raise invalid_value(f"attributes.{name} must be a string (at most 1000 characters), number, boolean or null")


def _check_writable(contract: Contract, claim: str) -> None:
    if not (claim in READABLE or claim in WRITABLE or claim.startswith(ATTRIBUTE_PREFIX)):
        raise PartnerError(422, "unknown_claim", "Unknown claim", f"{claim!r} is not a claim of the partner API")
    if not contract.can_write(claim):
        raise PartnerError(403, "claim_not_writable", "Claim not writable",
                           f"{claim!r} is not in this client's write contract")


def check_if_match(if_match: str | None, current: str) -> None:
    """``If-Match`` must name ``current``: 428 without it (or with ``*``), 412 when it does not."""
    if not if_match or if_match.strip() == "*":
        raise PartnerError(428, "if_match_required", "Precondition required",
                           "send If-Match with the ETag of the representation you are changing")
    offered = [tag.strip() for tag in if_match.split(",")]
    if current not in offered:
        # RFC 9110 13.1.1: If-Match fails: someone else changed the data since it was read.
        raise PartnerError(412, "etag_mismatch", "Precondition failed",
                           "the data changed since it was read: read it again and reapply the change")


def lock_person(account: Account) -> Account:
    """The person's account under its row lock, re-read; not found when it is no longer active."""
    locked = lock_account(account.id)
    if locked is None or not locked.is_active:
        raise not_found()
    return locked


def patch_user(client: Client, sub: str, bound_account_id: int | None, changes, if_match: str | None, *,
               token_level: int) -> dict:
    """Apply a JSON merge patch (RFC 7396) of claims in the write contract, if ``if_match`` is the
    current ETag and the token's authentication (``token_level``) reaches the contract's
    ``write_acr``; nothing is written when any member is refused."""
    contract = require_contract(client)
    contract.require_write_assurance(token_level)
    if not isinstance(changes, dict) or not changes:
        raise PartnerError(400, "invalid_request", "Invalid request", "the body is a non-empty JSON object of claims")
    profile, attributes = {}, {}
    for claim, value in changes.items():
        if claim == "attributes":
            if not isinstance(value, dict) or not value:
                raise invalid_value("attributes is a non-empty object of attribute names to values (null removes)")
            for name, attribute in value.items():
                if not ATTRIBUTE_NAME_RE.match(name):
                    raise invalid_value(f"bad attribute name {name!r}")
                _check_writable(contract, ATTRIBUTE_PREFIX + name)
                attributes[name] = _attribute_value(name, attribute)
            continue
        _check_writable(contract, claim)
        if claim == "addresses":
            raise PartnerError(422, "use_addresses_resource", "Use the addresses resource",
                               "address book entries are added, changed and removed at /api/users/{sub}/addresses")
        if claim == "address":
            profile[claim] = address_value(value, ADDRESS_FIELDS, "address")
        else:
            profile[claim] = _string(value, claim, Account.__table__.c[claim].type.length)
    if if_match is None or if_match.strip() == "*":
        check_if_match(if_match, "")
    account = lock_person(person(client, sub, bound_account_id))
    check_if_match(if_match, user_etag(client, contract, account))

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
            raise invalid_value(f"a person has at most {MAX_ATTRIBUTES} custom attributes per tenant")
        if changed_attributes:
            if row is None:
                db.session.add(AccountAttributes(account_id=account.id, tenant_id=client.tenant_id, data=data))
            else:
                row.data = data
    note_write(account.id, changed, source="partner", client=client)
    note_write(account.id, attribute_claims(changed_attributes), source="partner", client=client, tenant_id=client.tenant_id)
    db.session.flush()
    audit.record("partner.write", account_id=account.id, actor=audit_actor(client), client_id=client.id,
                 claims=sorted(changed + attribute_claims(changed_attributes)))
    body = representation(client, contract, account)
    db.session.commit()
    return body
