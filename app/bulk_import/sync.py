"""Dual write during the transition (seed 001, step 1): a still-running legacy system pushes each
create, update and delete of one of its accounts, addressed by its legacy id. Lazy migration
(app.bulk_import.lazy) applies the webhook's record through the same code.

The rules (docs/flows/sync-and-lazy-migration.md explains them):

- **Order**: every change carries a ``version`` (an integer that grows) and/or an ``updated_at``.
  Versions are compared when both the change and the mapping have one, else the times; a change
  not newer than what was applied is *stale* (409) and changes nothing, except an exact repeat
  (same content), which answers "unchanged": delivery may be at least once.
- **A legacy system speaks only for what it created.** A new legacy id naming an identifier held
  by a hub account this tenant's legacy system did not create is never linked on its word (its
  ``*_verified`` flags prove nothing about someone else's account): the change is recorded as a
  ``SyncConflict`` (answer ``pending_proof``; app.bulk_import.sync_conflicts) and nothing else is
  written. It links when the person logs in to the account holding that identifier at a site of
  the tenant (the ``account_logged_in`` signal → ``confirm_links``). A new legacy id whose
  verified phone is on an account the tenant created itself (under another legacy id) links to
  it; the phone unverified on either side → ``phone_conflict``; another identifier held →
  ``*_conflict``.
- **Update**: on an account its record created (``LegacyMapping.created_account``), the record's
  password, username, phone and email replace the account's — the identities this legacy system
  added, never one the person, an operator or another tenant added; upstream subjects are added;
  profile claims and attributes replace. On an account it was linked to: only missing profile
  claims, identifiers of kinds the account lacks that cannot log in without the person's password
  (its username, an unverified email), and its tenant attributes; never the password.
- **Delete**: the mapping is marked deleted (it stays for foreign keys); the account is closed
  like a deregistration only when nothing else holds it: no other live legacy mapping, no
  username in another tenant, no subject at a client of another tenant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.binding import deregister
from app.accounts.claims import announce, announcing_identity_claims, attribute_claims
from app.accounts.locking import lock_account
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.bulk_import.hashes import normalize_legacy_hash
from app.bulk_import.models import AccountAttributes, LegacyMapping, SyncConflict
from app.bulk_import.records import InvalidRecord, LegacyRecord, RawRecord, iso_time, parse_record
from app.bulk_import.sync_conflicts import find_conflict, held_by_another, live_holder, record_conflict
from app.errors import Conflict, InvalidInput, NotFound, TesseraError
from app.extensions import db
from app.oidc.clients import get_client_by_pk
from app.oidc.models import Client, SubjectMapping
from app.oidc.subjects import subject_for
from app.security import utcnow
from app.tenants.models import Tenant

log = logging.getLogger(__name__)


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
    #: created | linked | updated | unchanged | deleted | closed | pending_proof | withdrawn
    result: str
    #: None while the legacy id waits for the person's proof (``conflict``)
    mapping: LegacyMapping | None
    warnings: list[str]
    conflict: SyncConflict | None = None


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
    # Kept while the change waits for a person's proof; without the password, which a tenant never
    # sets on an account it did not create.
    record.source_data = {k: v for k, v in data.items() if k not in ("password_hash", "password_format")}
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
    """The mapping's account, following merges to the survivor (the mapping is repointed, and no
    longer counts as having created it)."""
    account = db.session.get(Account, mapping.account_id)
    seen = set()
    while account.status == "merged" and account.merged_into_id and account.id not in seen:
        seen.add(account.id)
        account = db.session.get(Account, account.merged_into_id)
    if account.id != mapping.account_id:
        mapping.account_id = account.id
        mapping.created_account = False  # the survivor is not what the legacy record created
    return account


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
        lock_account(account.id)
        if not account.is_active:
            db.session.rollback()
            raise SyncError("the hub account of this legacy account is closed", "account_closed")
        created = mapping.created_account
        with announcing_identity_claims(account.id, source=source, client=writer) as also:
            changed = _update_identities(account, tenant, record, context, created=created, warnings=warnings)
            also += _set_profile(account, record.profile, fill_only=not created)
        changed += also
        if password_hash or record.password_hash:
            if created:
                account.password_hash = password_hash or record.password_hash
                changed.append("password")
            else:
                warnings.append("password: not changed (this legacy account was linked to an account the person "
                                "already had: the password is the person's)")
        changed += _set_attributes(account, tenant, record.attributes, source=source, writer=writer, known=True)
        result = "updated"
    else:
        pending = find_conflict(tenant.id, record.legacy_id, lock=True)
        if pending is not None and pending.status == "deleted":
            db.session.rollback()
            raise SyncError("this legacy account was deleted; a legacy id is never reused", "deleted")
        if pending is not None and pending.status == "pending":
            newer = _newer(order, pending)
            if newer is None and pending.record_hash == record.record_hash:
                db.session.rollback()
                return SyncResult("pending_proof", None, warnings, conflict=pending)
            if not newer:
                db.session.rollback()
                raise StaleChange("a newer change of this legacy account was already received")
        held = held_by_another(tenant, record)
        if held is not None:
            conflict = record_conflict(tenant, record, held, pending, version=order.version,
                                       updated_at=order.updated_at, source=source, context=context)
            db.session.commit()
            return SyncResult("pending_proof", None, warnings, conflict=conflict)
        if pending is not None and pending.status == "pending":
            pending.status, pending.resolved_at = "withdrawn", utcnow()  # no longer names that identifier
        account, result = _anchor_account(record)
        known = account is not None  # a hub account the record links to (clients may know it)
        if account is None:
            account = Account(**{k: v for k, v in record.profile.items()})
            account.password_hash = password_hash or record.password_hash
            db.session.add(account)
            db.session.flush()
            changed = _update_identities(account, tenant, record, context, created=True, warnings=warnings)
            if not changed:
                db.session.rollback()
                raise InvalidInput("the record leaves the account with no identifier")
            changed += [c for c in record.profile] + (["password"] if account.password_hash else [])
        else:
            changed = _link(account, tenant, record, context, source=source, writer=writer, warnings=warnings)
        changed += _set_attributes(account, tenant, record.attributes, source=source, writer=writer, known=known)
        mapping = LegacyMapping(tenant_id=tenant.id, legacy_id=record.legacy_id, account_id=account.id, source=source,
                                created_account=result == "created")
        db.session.add(mapping)
    mapping.legacy_version = order.version if order.version is not None else mapping.legacy_version
    mapping.legacy_updated_at = order.updated_at or mapping.legacy_updated_at
    mapping.record_hash = record.record_hash
    audit.record(f"legacy.{result}", account_id=account.id, **context, tenant=tenant.slug, legacy_id=record.legacy_id,
                 source=source, version=order.version, changed=sorted(set(changed)))
    db.session.commit()
    return SyncResult(result, mapping, warnings)


def _link(account: Account, tenant: Tenant, record: LegacyRecord, context: dict, *, source: str, writer,
          warnings: list[str], skip_held: bool = False) -> list[str]:
    """Join a new legacy id to an account it did not create (the tenant's own under another legacy
    id, or one the person proved): identifiers of the kinds the account lacks that cannot log in
    without the person's password, and the missing profile claims. Never its password."""
    lock_account(account.id)
    with announcing_identity_claims(account.id, source=source, client=writer) as also:
        changed = _update_identities(account, tenant, record, context, created=False, warnings=warnings,
                                     skip_held=skip_held)
        also += _set_profile(account, record.profile, fill_only=True)
    if record.password_hash:
        warnings.append("password: not set (the account existed before this legacy account: the password is the person's)")
    return changed + also


def _anchor_account(record: LegacyRecord) -> tuple[Account | None, str]:
    """The hub account a new legacy id joins — only ever one the tenant's legacy system created
    (``held_by_another`` came first): the holder of its phone when both sides verified it (the
    phone is the anchor: one person), else none (a new account)."""
    if not record.phone:
        return None, "created"
    holder = live_holder("phone", "", record.phone)
    if holder is None:
        return None, "created"
    account = db.session.get(Account, holder.account_id)
    if record.phone_verified and holder.verified and account.is_active:
        return account, "linked"
    raise IdentifierConflict("this phone is on another hub account and is not verified on both sides: "
                             "it cannot tell whether they are the same person", "phone_conflict")


# --- the person's proof (a login at a site of the tenant) -----------------------------------------

def confirm_links(account: Account, tenant_id: int) -> list[SyncConflict]:
    """The person just logged in to ``account`` at a site of the tenant: the login proves they hold
    it, and so every identifier on it. The tenant's conflicts naming one of those identifiers are
    linked (a mapping that did not create the account), in the caller's transaction."""
    rows = list(db.session.scalars(
        db.select(SyncConflict)
        .join(Identity, (Identity.kind == SyncConflict.identity_kind)
              & (Identity.namespace == SyncConflict.identity_namespace)
              & (Identity.value == SyncConflict.identity_value) & Identity.released_at.is_(None))
        .where(SyncConflict.tenant_id == tenant_id, SyncConflict.status == "pending", Identity.account_id == account.id)
        .order_by(SyncConflict.id)
    ))
    linked = []
    for row in rows:
        try:
            with db.session.begin_nested():
                _confirm(row, account)
        except (TesseraError, IntegrityError) as exc:
            # The login goes on; the conflict stays pending for the next one (or an operator).
            log.warning("legacy link %s/%s not confirmed: %s", tenant_id, row.legacy_id, getattr(exc, "detail", exc))
            continue
        linked.append(row)
    return linked


def _confirm(row: SyncConflict, account: Account) -> None:
    tenant = db.session.get(Tenant, row.tenant_id)
    context = {"actor": "self", "client_id": None}
    if find_mapping(tenant.id, row.legacy_id) is not None:
        row.status, row.resolved_at = "withdrawn", utcnow()
        return
    record, _order = parse_change(row.legacy_id, {**row.record, "version": row.legacy_version or 0})
    warnings: list[str] = []
    changed = _link(account, tenant, record, context, source=row.source, writer=None, warnings=warnings,
                    skip_held=True)
    changed += _set_attributes(account, tenant, record.attributes, source=row.source, writer=None, known=True)
    db.session.add(LegacyMapping(tenant_id=tenant.id, legacy_id=row.legacy_id, account_id=account.id, source=row.source,
                                 created_account=False, legacy_version=row.legacy_version,
                                 legacy_updated_at=row.legacy_updated_at, record_hash=row.record_hash))
    row.status, row.resolved_at = "linked", utcnow()
    audit.record("legacy.linked", account_id=account.id, **context, tenant=tenant.slug, legacy_id=row.legacy_id,
                 source=row.source, proof="login", changed=sorted(set(changed)), skipped=warnings)
    db.session.flush()


def _update_identities(account: Account, tenant: Tenant, record: LegacyRecord, context: dict, *, created: bool,
                       warnings: list[str], skip_held: bool = False) -> list[str]:
    """Give the account the record's identifiers. Returns the kinds changed.

    ``created`` (the legacy record created the account): the record's username, phone and email
    replace the ones this tenant's legacy system added; an identifier of that kind the person, an
    operator or another tenant added stays, and the record's is not added. Otherwise (a linked
    account) only kinds the account lacks are added, and only those that cannot log in without
    the person's password: the tenant's username, and an email (unverified: the legacy system's
    flag proves nothing here). A phone or an upstream subject would be a way in (a code, an
    upstream login): the person binds those.

    An identifier on another account is a conflict (nothing written) — or, with ``skip_held``,
    left out with a warning."""
    wanted = []
    if record.username:
        wanted.append(("username", str(tenant.id), record.username, True))
    if record.phone:
        wanted.append(("phone", "", record.phone, record.phone_verified))
    if record.email:
        wanted.append(("email", "", record.email, record.email_verified))
    wanted += [("upstream", u.provider, u.subject, True, u) for u in record.upstreams]
    changed = []
    live = list(db.session.scalars(db.select(Identity).filter_by(account_id=account.id, released_at=None)))
    for kind, namespace, value, verified, *upstream in wanted:
        holder = live_holder(kind, namespace, value)
        if holder is not None and holder.account_id != account.id:
            if skip_held:
                warnings.append(f"{kind}: on another hub account, not added")
                continue
            raise IdentifierConflict(f"this {kind} is on another hub account", f"{kind}_conflict")
        if holder is not None:
            # The hub never downgrades a verification, and takes one only for an identity this
            # tenant's legacy system added itself.
            if verified and not holder.verified and holder.legacy_tenant_id == tenant.id:
                holder.verified = True
                changed.append(kind)
            continue
        current = [i for i in live if i.kind == kind and i.namespace == namespace]
        if kind == "upstream":
            current = []  # upstream subjects are added, never replaced
        theirs = [i for i in current if i.legacy_tenant_id != tenant.id]
        if not created:
            if current:
                continue  # the account has one: the person's (or another tenant's) stays
            if kind in ("phone", "upstream"):
                warnings.append(f"{kind}: not added (the account existed before this legacy account; "
                                f"a {kind} is a way in, the person adds it)")
                continue
            if kind == "email":
                verified = False
        elif theirs:
            warnings.append(f"{kind}: kept (the account's {kind} was set in the hub, not by this legacy system)")
            continue
        for old in current:
            old.released_at = utcnow()
            audit.record("identity.released", account_id=account.id, **context, identity_kind=kind, value=old.value,
                         reason="replaced by the legacy system")
        db.session.flush()  # released rows leave the live unique index before the new one arrives
        unionid = upstream[0].unionid if upstream else None
        db.session.add(Identity(account_id=account.id, kind=kind, namespace=namespace, value=value, verified=verified,
                                unionid=unionid, legacy_tenant_id=tenant.id))
        audit.record("identity.added", account_id=account.id, **context, identity_kind=kind, value=value,
                     namespace=namespace or None, verified=verified)
        changed.append(kind)
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
        announce(account.id, attribute_claims(names), source=source, client=writer, tenant_id=tenant.id)
    return ["attributes"]


# --- delete ----------------------------------------------------------------------------------------

def delete_legacy_account(tenant: Tenant, legacy_id: str, order: ChangeOrder, *, actor: str,
                          client_id: int | None = None) -> SyncResult:
    """The legacy system deleted the account: mark the mapping, close the account when nothing
    else holds it. Repeating a delete answers the same."""
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
    account = current_account(mapping)
    attributes = db.session.scalar(
        db.select(AccountAttributes.data).filter_by(account_id=account.id, tenant_id=mapping.tenant_id)
    )
    identities = []
    for identity in account.identities:
        if identity.kind == "username" and identity.namespace != str(mapping.tenant_id):
            continue  # another tenant's usernames are not this tenant's business
        if not mapping.created_account and identity.legacy_tenant_id != mapping.tenant_id:
            continue  # on an account it was linked to, the tenant sees the identities it added
        identities.append({"kind": identity.kind, "value": identity.value, "verified": identity.verified,
                           **({"provider": identity.namespace} if identity.kind == "upstream" else {})})
    state = {
        "legacy_id": mapping.legacy_id,
        "status": account.status,
        "source": mapping.source,
        "created_account": mapping.created_account,
        "version": mapping.legacy_version,
        "updated_at": iso_time(mapping.legacy_updated_at),
        "deleted_at": iso_time(mapping.deleted_at),
        "has_password": bool(account.password_hash),
        "identities": identities,
        "profile": {c: getattr(account, c) for c in (*PROFILE_CLAIMS, "address") if getattr(account, c)},
        "attributes": attributes or {},
    }
    if client is not None and account.status != "closed":
        state["sub"] = subject_for(client, account.id)
    return state
