"""Tenant service: create, look up, list, change and delete tenants (their name, branding and policy).

A tenant is deleted only when nothing refers to it any more: no client, no username in its
namespace, no identity, legacy mapping, import job, sync conflict or custom attribute its legacy
system or partners left (``tenant_references``: every foreign key to ``tenants`` the schema
declares, found at run time, and the two namespaces that name a tenant by its id)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app import audit
from app.accounts.models import Identity
from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.oidc.models import Client
from app.partners.models import ClaimProvenance
from app.oidc.redirects import is_loopback_host
from app.tenants.models import Tenant

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: A branding colour goes into the pages' style sheet: only a hex colour, nothing CSS could read more into.
COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def create_tenant(slug: str, name: str, branding: dict | None = None, policy: dict | None = None) -> Tenant:
    if not SLUG_RE.match(slug or ""):
        raise InvalidInput("slug must be 1-63 lowercase letters, digits or dashes")
    if not (name or "").strip():
        raise InvalidInput("name must not be empty")
    if db.session.scalar(db.select(Tenant).filter_by(slug=slug)):
        raise Conflict(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name.strip(), branding=check_branding(branding or {}), policy=policy or {})
    db.session.add(tenant)
    db.session.commit()
    return tenant


def check_branding(branding: dict) -> dict:
    """``primary_color`` a hex colour (``#rgb`` or ``#rrggbb``); ``logo_uri`` an https URL (http only
    on a loopback host)."""
    color = branding.get("primary_color")
    if color is not None and not COLOR_RE.match(color):
        raise InvalidInput(f"the colour must be #rgb or #rrggbb: {color!r}")
    logo = branding.get("logo_uri")
    if logo is not None:
        parts = urlsplit(logo)
        if not ((parts.scheme == "https" and parts.hostname)
                or (parts.scheme == "http" and is_loopback_host(parts.hostname))):
            raise InvalidInput(f"the logo URI must be an https URL (http only on loopback hosts): {logo!r}")
    return branding


def get_tenant(slug: str) -> Tenant:
    tenant = db.session.scalar(db.select(Tenant).filter_by(slug=slug))
    if tenant is None:
        raise InvalidInput(f"no tenant {slug!r}")
    return tenant


def set_policy(slug: str, **changes) -> Tenant:
    tenant = get_tenant(slug)
    tenant.policy = {**(tenant.policy or {}), **changes}
    db.session.commit()
    return tenant


def list_tenants() -> list[Tenant]:
    """Every tenant, by slug."""
    return list(db.session.scalars(db.select(Tenant).order_by(Tenant.slug)))


def client_count(tenant: Tenant) -> int:
    """How many clients the tenant owns."""
    return db.session.scalar(db.select(func.count(Client.id)).where(Client.tenant_id == tenant.id))


def update_tenant(slug: str, *, actor: str, name: str | None = None, color: str | None = None,
                  logo_uri: str | None = None, trust_all_clients: bool | None = None,
                  login_chain: list[str] | None = None, require_mfa: bool | None = None) -> Tenant:
    """Change the given fields (None leaves one as it is; an empty ``color`` or ``logo_uri``
    removes it), keeping the other branding and policy keys. Audited as ``tenant.updated``."""
    if all(v is None for v in (name, color, logo_uri, trust_all_clients, login_chain, require_mfa)):
        raise InvalidInput("nothing to change: give at least one field")
    tenant = get_tenant(slug)
    changed = []
    if name is not None:
        if not name.strip():
            raise InvalidInput("name must not be empty")
        tenant.name = name.strip()
        changed.append("name")
    branding = dict(tenant.branding or {})
    for key, value in (("primary_color", color), ("logo_uri", logo_uri)):
        if value == "":
            branding.pop(key, None)
        elif value is not None:
            branding[key] = value
        if value is not None:
            changed.append(key)
    tenant.branding = check_branding(branding)
    policy = dict(tenant.policy or {})
    for key, value in (("trust_all_clients", trust_all_clients), ("login_chain", login_chain),
                       ("require_mfa", require_mfa)):
        if value is not None:
            policy[key] = list(value) if key == "login_chain" else value
            changed.append(key)
    tenant.policy = policy
    audit.record("tenant.updated", actor=actor, tenant=slug, changed=changed)
    db.session.commit()
    return tenant


#: What each reference to a tenant is, in the refusal to delete it (a foreign key not named here
#: is shown by its table and column).
REFERENCE_NAMES = {
    ("clients", "tenant_id"): "clients",
    ("admin_roles", "tenant_id"): "tenant admins (tessera admins revoke)",
    ("identities", "legacy_tenant_id"): "identities its legacy system added",
    ("legacy_mappings", "tenant_id"): "legacy mappings",
    ("import_jobs", "tenant_id"): "import jobs",
    ("sync_conflicts", "tenant_id"): "sync conflicts",
    ("account_attributes", "tenant_id"): "accounts with its custom attributes",
    ("claim_changes", "tenant_id"): "changes of its custom attributes",
    ("identities", "namespace"): "usernames in its namespace (live or released)",
    ("claim_provenance", "namespace"): "provenance records of its custom attributes",
}


def tenant_references(tenant: Tenant) -> dict[str, int]:
    """What still refers to the tenant: name (``REFERENCE_NAMES``) → rows, only those with rows.
    Every foreign key to ``tenants`` in the schema counts, and the namespaces that hold its id as
    text: usernames (``identities.namespace``) and the provenance of its custom attributes
    (``claim_provenance.namespace`` = ``tenant:<id>``)."""
    counts = {}
    for table in db.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is Tenant.__table__:
                counts[(table.name, fk.parent.name)] = select(func.count()).select_from(table).where(
                    fk.parent == tenant.id)
    counts[("identities", "namespace")] = select(func.count(Identity.id)).where(
        Identity.kind == "username", Identity.namespace == str(tenant.id))
    counts[("claim_provenance", "namespace")] = select(func.count(ClaimProvenance.id)).where(
        ClaimProvenance.namespace == f"tenant:{tenant.id}")
    found = {}
    for key, query in counts.items():
        rows = db.session.scalar(query)
        if rows:
            found[REFERENCE_NAMES.get(key, f"{key[0]}.{key[1]}")] = rows
    return found


def delete_tenant(slug: str, *, actor: str) -> dict:
    """Delete a tenant nothing refers to (``tenant_references``); otherwise ``Conflict`` naming
    what remains. The tenant's row is locked first (on PostgreSQL a row that would refer to it
    waits for this transaction), and a reference that still appears makes the delete a
    ``Conflict`` too, never a database error. SQLite never reuses a deleted tenant's id. Audited
    as ``tenant.deleted``; returns the tenant as it was."""
    tenant = get_tenant(slug)
    for_update = db.session.get_bind().dialect.name == "postgresql"
    tenant = db.session.get(Tenant, tenant.id, with_for_update=for_update or None, populate_existing=True)
    remaining = tenant_references(tenant)
    if remaining:
        db.session.rollback()
        what = "; ".join(f"{name}: {count}" for name, count in remaining.items())
        raise Conflict(f"tenant {slug!r} is not empty, these refer to it: {what}. Only a tenant nothing refers "
                       "to can be deleted")
    data = tenant.to_dict()
    audit.record("tenant.deleted", actor=actor, tenant=slug, tenant_id=tenant.id, name=tenant.name)
    db.session.delete(tenant)
    try:
        db.session.commit()
    except SQLAlchemyError as exc:  # a row referring to it appeared meanwhile (a foreign key)
        db.session.rollback()
        raise Conflict(f"tenant {slug!r} cannot be deleted: something refers to it now ({type(exc).__name__})") from None
    return data
