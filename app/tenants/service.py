"""Tenant service: create, look up, list and change tenants (their name, branding and policy)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import func

from app import audit
from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.oidc.models import Client
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
                  login_chain: list[str] | None = None) -> Tenant:
    """Change the given fields (None leaves one as it is; an empty ``color`` or ``logo_uri``
    removes it), keeping the other branding and policy keys. Audited as ``tenant.updated``."""
    if all(v is None for v in (name, color, logo_uri, trust_all_clients, login_chain)):
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
    for key, value in (("trust_all_clients", trust_all_clients), ("login_chain", login_chain)):
        if value is not None:
            policy[key] = list(value) if key == "login_chain" else value
            changed.append(key)
    tenant.policy = policy
    audit.record("tenant.updated", actor=actor, tenant=slug, changed=changed)
    db.session.commit()
    return tenant
