"""Lazy migration: a tenant whose legacy system still holds accounts the hub has not imported
(or imported without a password) names a verification webhook (tenant policy
``legacy_verify_url``, ``tessera tenants set-legacy-verify``). A password login with an
identifier the hub does not know in that tenant, or of a mapped account without a password, asks
the webhook; when the legacy system vouches for the password, the account is imported on the spot
(LegacyMapping source "lazy") with the password hashed by the hub, and the login succeeds.

The webhook: ``POST {"login": …, "password": …}`` (JSON) through app.net.fetch (no private
addresses in production, no redirects, a timeout, a size cap). It answers 200 with the account
record (a sync PUT body, with ``legacy_id``), or 401/404 when the login or password is wrong.
Anything else, a timeout, or a record the hub cannot take is a failed login, logged; the person
sees the one answer every failed login gets.
"""

from __future__ import annotations

import logging

from app import audit
from app.accounts.locking import lock_account
from app.accounts.login import find_identity
from app.accounts.models import Account, Identity
from app.accounts.passwords import hash_password
from app.bulk_import import sync
from app.bulk_import.models import LegacyMapping
from app.errors import TesseraError
from app.extensions import db
from app.net import OutboundError, fetch
from app.tenants.models import Tenant

log = logging.getLogger(__name__)

POLICY_KEY = "legacy_verify_url"


def verify_url(tenant_id: int | None) -> str | None:
    if tenant_id is None:
        return None
    tenant = db.session.get(Tenant, tenant_id)
    return (tenant.policy or {}).get(POLICY_KEY) if tenant is not None else None


def wants_legacy_check(account: Account | None, tenant_id: int | None) -> bool:
    """Whether a login should ask the legacy system: the identifier is unknown, or names an
    account of this tenant's legacy system that has no password yet."""
    if not verify_url(tenant_id):
        return False
    if account is None:
        return True
    # Only an account this legacy system created: it never sets the password of one it was linked to.
    return account.password_hash is None and db.session.scalar(
        db.select(LegacyMapping.id).filter_by(tenant_id=tenant_id, account_id=account.id, deleted_at=None,
                                              created_account=True).limit(1)
    ) is not None


def ask_legacy_system(login: str, password: str, tenant_id: int) -> dict | None:
    """The webhook's account record when it vouches for (login, password), else None."""
    url = verify_url(tenant_id)
    try:
        response = fetch("POST", url, json={"login": login, "password": password},
                         headers={"Accept": "application/json"})
    except OutboundError as exc:
        log.warning("legacy verification webhook of tenant %s failed: %s", tenant_id, exc)
        return None
    if response.status_code in (401, 404):
        return None
    if response.status_code != 200:
        log.warning("legacy verification webhook of tenant %s answered %s", tenant_id, response.status_code)
        return None
    try:
        record = response.json()
    except ValueError:
        record = None
    if not isinstance(record, dict) or not record.get("legacy_id"):
        log.warning("legacy verification webhook of tenant %s answered 200 without an account record", tenant_id)
        return None
    return record


def migrate_on_login(login: str, password: str, tenant_id: int, known: Account | None) -> tuple[Account, Identity] | None:
    """Ask the legacy system about a login; on success import (or complete) the account with the
    hub's hash of ``password`` and return it with the identity ``login`` names. None: the login
    fails (nothing was written)."""
    body = ask_legacy_system(login, password, tenant_id)
    if body is None:
        return None
    tenant = db.session.get(Tenant, tenant_id)
    legacy_id = str(body["legacy_id"]).strip()
    mapping = sync.find_mapping(tenant_id, legacy_id)
    if mapping is not None:
        # Imported without a password: the record's data comes by import or sync, only the
        # password is taken, and only for the account the login names.
        account = sync.current_account(mapping)
        identity = find_identity(login, tenant_id)
        if (account.password_hash or not account.is_active or not mapping.created_account or identity is None
                or identity.account_id != account.id):
            log.warning("legacy webhook of tenant %s vouched for %r, not the account the login names, one that "
                        "has a password, or one its legacy system did not create", tenant.slug, legacy_id)
            db.session.rollback()
            return None
        _set_password(account, mapping, password, tenant)
        return account, identity
    if known is not None:
        log.warning("legacy webhook of tenant %s vouched for %r, not the account the login names", tenant.slug, legacy_id)
        return None
    try:
        record, order = sync.parse_change(legacy_id, {"version": 0, **body})
        result = sync.apply_change(tenant, record, order, source="lazy", actor="system:lazy-migration",
                                   password_hash=hash_password(password))
    except TesseraError as exc:
        log.warning("legacy webhook of tenant %s: account %r not imported: %s", tenant.slug, legacy_id, exc.detail)
        return None
    if result.mapping is None:
        # It names an identifier of an account this legacy system did not create: recorded as a
        # conflict, linked only when that account's holder logs in (sync.confirm_links).
        log.warning("legacy webhook of tenant %s: account %r names an identifier of an account it did not "
                    "create: waiting for that person's proof", tenant.slug, legacy_id)
        return None
    account = sync.current_account(result.mapping)
    identity = find_identity(login, tenant_id)
    if identity is None or identity.account_id != account.id:
        # Imported (the legacy system vouched for it), but under other identifiers than the one typed.
        log.warning("legacy webhook of tenant %s: the account %r does not carry the login typed", tenant.slug, legacy_id)
        return None
    return account, identity


def _set_password(account: Account, mapping, password: str, tenant: Tenant) -> None:
    lock_account(account.id)
    account.password_hash = hash_password(password)
    audit.record("legacy.password_migrated", account_id=account.id, actor="system:lazy-migration",
                 tenant=tenant.slug, legacy_id=mapping.legacy_id)


class LegacyVerification:
    """The login fallback lazy migration registers (``app.registries``, by ``app.bulk_import.wiring``):
    the account core asks it about the logins it cannot check itself."""

    def wants(self, account: Account | None, tenant_id: int | None) -> bool:
        return wants_legacy_check(account, tenant_id)

    def migrate(self, login: str, password: str, tenant_id: int | None, account: Account | None):
        return migrate_on_login(login, password, tenant_id, account)
