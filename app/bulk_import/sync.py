"""Dual write during the transition (seed 001, step 1): a still-running legacy system pushes each
create, update and delete of one of its accounts, addressed by its legacy id. Lazy migration
(app.bulk_import.lazy) applies the webhook's record through the same code.

The rules (docs/flows/sync-and-lazy-migration.md explains them):

- **Order**: every change carries a ``version`` (an integer that grows) and/or an ``updated_at``.
  Versions are compared when both the change and the mapping have one, else the times; a change
  not newer than what was applied is *stale* (409) and changes nothing, except an exact repeat
  (same content), which answers "unchanged": delivery may be at least once.
- **Identity**: (tenant, legacy id) → one account, forever. A new legacy id whose *verified* phone
  is on a hub account whose phone is verified too is the same person: the mapping points at that
  account ("linked"). The phone unverified on either side → ``phone_conflict``; an email,
  username or upstream subject held by another account → ``*_conflict``; nothing is written.
- **Update**: the record's username (the tenant's namespace), phone and email replace the
  account's; upstream subjects are added; profile claims and attributes replace. A linked account
  keeps what the hub already had (missing claims filled, its password kept).
- **Delete**: the mapping is marked deleted (it stays for foreign keys); the account is closed
  like a deregistration only when nothing else holds it: no other live legacy mapping, no
  username in another tenant, no subject at a client of another tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.accounts import audit
from app.accounts.models import Account, Identity
from app.bulk_import.hashes import normalize_legacy_hash
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.bulk_import.records import InvalidRecord, LegacyRecord, RawRecord, parse_record
from app.errors import Conflict, InvalidInput, NotFound, TesseraError
from app.extensions import db
from app.merging.service import lock_for_write
from app.oidc.clients import get_client_by_pk
from app.partners.changes import attribute_claims, note_write, noting_identity_claims
from app.security import utcnow
from app.tenants.models import Tenant


class SyncError(Conflict):
    """A refused change; ``reason`` is the problem's stable member."""

    reason = "conflict"

    def __init__(self, detail: str, reason: str | None = None):
        super().__init__(detail)
        if reason:
            self.reason = reason


class StaleChange(SyncError):
    title = "Stale change"
    reason = "stale"


class IdentifierConflict(SyncError):
    title = "Identifier conflict"


@dataclass
class ChangeOrder:
    version: int | None
    updated_at: datetime | None


@dataclass
class SyncResult:
    #: created | linked | updated | unchanged | deleted | closed
    result: str
    mapping: LegacyMapping
    warnings: list[str]


# --- parsing ---------------------------------------------------------------------------------------

def parse_change(legacy_id: str, body: dict) -> tuple[LegacyRecord, ChangeOrder]:
    """A PUT body (an import record, plus ``version``) → the validated record and its order."""
    if not isinstance(body, dict):
        raise InvalidInput("the body is a JSON object (an import record)")
    declared = body.get("legacy_id")
    if declared is not None and str(declared).strip() != legacy_id:
        raise InvalidInput("the body's legacy_id is not the one in the URL")
    data = {k: v for k, v in body.items() if k != "version"}
    data["legacy_id"] = legacy_id
    try:
        record = parse_record(RawRecord(line=0, end_offset=0, data=data),
                              region=current_app.config["TESSERA_DEFAULT_REGION"], normalize_hash=normalize_legacy_hash)
    except InvalidRecord as exc:
        raise InvalidInput(exc.detail) from None
    order = ChangeOrder(version=parse_version(body.get("version")), updated_at=record.updated_at)
    if order.version is None and order.updated_at is None:
        raise InvalidInput("a change carries a version or an updated_at, so that a stale one never wins")
    return record, order


def parse_version(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput("version is a non-negative integer")
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("version is a non-negative integer") from None
    if version < 0 or version >= 2**63:
        raise InvalidInput("version is a non-negative 64-bit integer")
    return version


def _newer(order: ChangeOrder, mapping: LegacyMapping) -> bool | None:
    """True: the change is newer than the mapping; False: older; None: the same point."""
    if order.version is not None and mapping.legacy_version is not None:
        if order.version == mapping.legacy_version:
            return None
        return order.version > mapping.legacy_version
    if order.updated_at is not None and mapping.legacy_updated_at is not None:
        if order.updated_at == mapping.legacy_updated_at:
            return None
        return order.updated_at > mapping.legacy_updated_at
    return True  # nothing to compare (an import without times): the change is applied


# --- lookups ---------------------------------------------------------------------------------------

def find_mapping(tenant_id: int, legacy_id: str, *, lock: bool = False) -> LegacyMapping | None:
    query = db.select(LegacyMapping).filter_by(tenant_id=tenant_id, legacy_id=legacy_id)
    if lock and db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.scalar(query)


def current_account(mapping: LegacyMapping) -> Account:
    """The mapping's account, following merges to the survivor (the mapping is repointed)."""
    account = db.session.get(Account, mapping.account_id)
    seen = set()
    while account.status == "merged" and account.merged_into_id and account.id not in seen:
        seen.add(account.id)
        account = db.session.get(Account, account.merged_into_id)
    if account.id != mapping.account_id:
        mapping.account_id = account.id
    return account


def _holder(kind: str, namespace: str, value: str) -> Identity | None:
    return db.session.scalar(
        db.select(Identity).filter_by(kind=kind, namespace=namespace, value=value, released_at=None)
    )


# --- applying a record -----------------------------------------------------------------------------

def apply_change(tenant: Tenant, record: LegacyRecord, order: ChangeOrder, *, source: str, actor: str,
                 client_id: int | None = None, password_hash: str | None = None) -> SyncResult:
    """Create, link or update the account of ``record`` in one transaction (committed here).
    ``password_hash`` (lazy migration: the password just verified) replaces the record's."""
    for attempt in (1, 2):
        try:
            return _apply(tenant, record, order, source=source, actor=actor, client_id=client_id,
                          password_hash=password_hash)
        except TesseraError:
            db.session.rollback()
            raise
        except IntegrityError:
            # Two first changes of one legacy id at once, or an identifier taken meanwhile: the
            # second sees the first's rows on its retry (an update, or a conflict).
            db.session.rollback()
            if attempt == 2:
                raise SyncError("a concurrent change took one of these identifiers: retry", "concurrent_change") from None
    raise AssertionError("unreachable")


def _apply(tenant, record, order, *, source, actor, client_id, password_hash) -> SyncResult:
    warnings = [detail for _kind, detail in record.problems]
    mapping = find_mapping(tenant.id, record.legacy_id, lock=True)
    context = {"actor": actor, "client_id": client_id}
    # The client pushing the change (told nothing of what it wrote itself), or None (lazy migration).
    writer = get_client_by_pk(client_id) if client_id else None
    if mapping is not None:
        newer = _newer(order, mapping)
        if newer is None and mapping.record_hash == record.record_hash:
            db.session.rollback()
            return SyncResult("unchanged", mapping, warnings)
        if not newer:
            db.session.rollback()
            raise StaleChange("a newer change of this legacy account was already applied")
        if mapping.deleted_at is not None:
            db.session.rollback()
            raise SyncError("this legacy account was deleted; a legacy id is never reused", "deleted")
        account = current_account(mapping)
        lock_for_write(account.id)
        if not account.is_active:
            db.session.rollback()
            raise SyncError("the hub account of this legacy account is closed", "account_closed")
        with noting_identity_claims(account.id, source=source, client=writer) as also:
            changed = _update_identities(account, tenant, record, context)
            also += _set_profile(account, record.profile, fill_only=False)
        changed += also
        if password_hash or record.password_hash:
            account.password_hash = password_hash or record.password_hash
            changed.append("password")
        changed += _set_attributes(account, tenant, record.attributes, source=source, writer=writer, known=True)
        result = "updated"
    else:
        account, result = _anchor_account(record)
        known = account is not None  # a hub account the record links to (clients may know it)
        if account is None:
            account = Account(**{k: v for k, v in record.profile.items()})
            account.password_hash = password_hash or record.password_hash
            db.session.add(account)
            db.session.flush()
            changed = _update_identities(account, tenant, record, context)
            if not changed:
                db.session.rollback()
                raise InvalidInput("the record leaves the account with no identifier")
            changed += [c for c in record.profile] + (["password"] if account.password_hash else [])
        else:
            lock_for_write(account.id)
            with noting_identity_claims(account.id, source=source, client=writer) as also:
                changed = _update_identities(account, tenant, record, context, keep_existing=True)
                also += _set_profile(account, record.profile, fill_only=True)
            changed += also
            if not account.password_hash and (password_hash or record.password_hash):
                account.password_hash = password_hash or record.password_hash
                changed.append("password")
        changed += _set_attributes(account, tenant, record.attributes, source=source, writer=writer, known=known)
        mapping = LegacyMapping(tenant_id=tenant.id, legacy_id=record.legacy_id, account_id=account.id, source=source)
        db.session.add(mapping)
    mapping.legacy_version = order.version if order.version is not None else mapping.legacy_version
    mapping.legacy_updated_at = order.updated_at or mapping.legacy_updated_at
    mapping.record_hash = record.record_hash
    audit.record(f"legacy.{result}", account_id=account.id, **context, tenant=tenant.slug, legacy_id=record.legacy_id,
                 source=source, version=order.version, changed=sorted(set(changed)))
    db.session.commit()
    return SyncResult(result, mapping, warnings)


def _anchor_account(record: LegacyRecord) -> tuple[Account | None, str]:
    """The hub account a new legacy id joins: the holder of its phone when both sides verified
    it (the phone is the anchor: one person), else none (a new account)."""
    if not record.phone:
        return None, "created"
    holder = _holder("phone", "", record.phone)
    if holder is None:
        return None, "created"
    account = db.session.get(Account, holder.account_id)
    if record.phone_verified and holder.verified and account.is_active:
        return account, "linked"
    raise IdentifierConflict("this phone is on another hub account and is not verified on both sides: "
                             "it cannot tell whether they are the same person", "phone_conflict")


def _update_identities(account: Account, tenant: Tenant, record: LegacyRecord, context: dict,
                       keep_existing: bool = False) -> list[str]:
    """Give the account the record's identifiers; ``keep_existing`` (a linked account) adds
    only kinds the account lacks. Returns the kinds changed."""
    wanted = []
    if record.username:
        wanted.append(("username", str(tenant.id), record.username, True))
    if record.phone:
        wanted.append(("phone", "", record.phone, record.phone_verified))
    if record.email:
        wanted.append(("email", "", record.email, record.email_verified))
    changed = []
    live = list(db.session.scalars(db.select(Identity).filter_by(account_id=account.id, released_at=None)))
    for kind, namespace, value, verified in wanted:
        holder = _holder(kind, namespace, value)
        if holder is not None and holder.account_id != account.id:
            raise IdentifierConflict(f"this {kind} is on another hub account", f"{kind}_conflict")
        if holder is not None:
            if verified and not holder.verified:  # the hub never downgrades a verification
                holder.verified = True
                changed.append(kind)
            continue
        current = [i for i in live if i.kind == kind and i.namespace == namespace]
        if current and keep_existing:
            continue
        for old in current:
            old.released_at = utcnow()
            audit.record("identity.released", account_id=account.id, **context, identity_kind=kind, value=old.value,
                         reason="replaced by the legacy system")
        db.session.flush()  # released rows leave the live unique index before the new one arrives
        db.session.add(Identity(account_id=account.id, kind=kind, namespace=namespace, value=value, verified=verified))
        audit.record("identity.added", account_id=account.id, **context, identity_kind=kind, value=value,
                     namespace=namespace or None, verified=verified)
        changed.append(kind)
    for upstream in record.upstreams:
        holder = _holder("upstream", upstream.provider, upstream.subject)
        if holder is not None and holder.account_id != account.id:
            raise IdentifierConflict("this upstream subject is on another hub account", "upstream_conflict")
        if holder is None:
            db.session.add(Identity(account_id=account.id, kind="upstream", namespace=upstream.provider,
                                    value=upstream.subject, unionid=upstream.unionid, verified=True))
            audit.record("identity.added", account_id=account.id, **context, identity_kind="upstream",
                         value=upstream.subject, namespace=upstream.provider, verified=True)
            changed.append("upstream")
    db.session.flush()
    return changed


def _set_profile(account: Account, profile: dict, *, fill_only: bool) -> list[str]:
    changed = []
    for claim, value in profile.items():
        if getattr(account, claim) == value or (fill_only and getattr(account, claim)):
            continue
        setattr(account, claim, value)
        changed.append(claim)
    return changed


def _set_attributes(account: Account, tenant: Tenant, attributes: dict | None, *, source: str,
                    writer, known: bool) -> list[str]:
    """Replace the tenant's attributes of the account. ``known``: the account existed before this
    change, so partners of the tenant that read the changed attributes are told (a change like
    a partner's write)."""
    if attributes is None:
        return []
    row = db.session.scalar(db.select(AccountAttributes).filter_by(account_id=account.id, tenant_id=tenant.id))
    before = dict(row.data or {}) if row is not None else {}
    if row is None:
        db.session.add(AccountAttributes(account_id=account.id, tenant_id=tenant.id, data=attributes))
    elif row.data == attributes:
        return []
    else:
        row.data = attributes
    if known:
        names = sorted(n for n in before.keys() | attributes.keys() if before.get(n) != attributes.get(n))
        note_write(account.id, attribute_claims(names), source=source, client=writer, tenant_id=tenant.id)
    return ["attributes"]


# --- delete ----------------------------------------------------------------------------------------

def delete_legacy_account(tenant: Tenant, legacy_id: str, order: ChangeOrder, *, actor: str,
                          client_id: int | None = None) -> SyncResult:
    """The legacy system deleted the account: mark the mapping, close the account when nothing
    else holds it. Repeating a delete answers the same."""
    from app.accounts.binding import deregister

    mapping = find_mapping(tenant.id, legacy_id, lock=True)
    if mapping is None:
        raise NotFound("no such legacy account in this tenant")
    if mapping.deleted_at is not None:
        account = db.session.get(Account, mapping.account_id)
        return SyncResult("closed" if account.status == "closed" else "deleted", mapping, [])
    if _newer(order, mapping) is False:
        raise StaleChange("a newer change of this legacy account was already applied")
    account = current_account(mapping)
    mapping.deleted_at = utcnow()
    if order.version is not None:
        mapping.legacy_version = order.version
    if order.updated_at is not None:
        mapping.legacy_updated_at = order.updated_at
    kept_by = held_elsewhere(account, mapping) if account.is_active else "already closed"
    audit.record("legacy.deleted", account_id=account.id, actor=actor, client_id=client_id, tenant=tenant.slug,
                 legacy_id=legacy_id, account_closed=kept_by is None, kept_by=kept_by)
    if kept_by is None:
        deregister(account.id)  # commits the mapping and the audit event with the closure
        return SyncResult("closed", mapping, [])
    db.session.commit()
    return SyncResult("deleted", mapping, [])


def held_elsewhere(account: Account, mapping: LegacyMapping) -> str | None:
    """Why the account must outlive this legacy account (None: nothing else holds it)."""
    from app.oidc.models import Client, SubjectMapping

    other_mapping = db.session.scalar(
        db.select(LegacyMapping.id).where(LegacyMapping.account_id == account.id, LegacyMapping.id != mapping.id,
                                          LegacyMapping.deleted_at.is_(None)).limit(1)
    )
    if other_mapping is not None:
        return "another legacy account"
    other_username = db.session.scalar(
        db.select(Identity.id).where(Identity.account_id == account.id, Identity.kind == "username",
                                     Identity.namespace != str(mapping.tenant_id), Identity.released_at.is_(None)).limit(1)
    )
    if other_username is not None:
        return "a username in another tenant"
    other_client = db.session.scalar(
        db.select(SubjectMapping.id)
        .join(Client, Client.sector_identifier == SubjectMapping.sector)
        .where(SubjectMapping.account_id == account.id, Client.tenant_id != mapping.tenant_id).limit(1)
    )
    if other_client is not None:
        return "a client of another tenant"
    return None


# --- reading ---------------------------------------------------------------------------------------

def legacy_state(mapping: LegacyMapping, client=None) -> dict:
    """What the hub holds for a legacy account (no internal ids: the client's ``sub`` instead)."""
    from app.accounts.models import PROFILE_CLAIMS
    from app.oidc.subjects import subject_for

    account = current_account(mapping)
    attributes = db.session.scalar(
        db.select(AccountAttributes.data).filter_by(account_id=account.id, tenant_id=mapping.tenant_id)
    )
    identities = []
    for identity in account.identities:
        if identity.kind == "username" and identity.namespace != str(mapping.tenant_id):
            continue  # another tenant's usernames are not this tenant's business
        identities.append({"kind": identity.kind, "value": identity.value, "verified": identity.verified,
                           **({"provider": identity.namespace} if identity.kind == "upstream" else {})})
    state = {
        "legacy_id": mapping.legacy_id,
        "status": account.status,
        "source": mapping.source,
        "version": mapping.legacy_version,
        "updated_at": _iso(mapping.legacy_updated_at),
        "deleted_at": _iso(mapping.deleted_at),
        "has_password": bool(account.password_hash),
        "identities": identities,
        "profile": {c: getattr(account, c) for c in (*PROFILE_CLAIMS, "address") if getattr(account, c)},
        "attributes": attributes or {},
    }
    if client is not None and account.status != "closed":
        state["sub"] = subject_for(client, account.id)
    return state


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
