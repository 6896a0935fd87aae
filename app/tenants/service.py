"""Tenant service: create and look up tenants."""

from __future__ import annotations

import re

from app.errors import Conflict, InvalidInput
from app.extensions import db
from app.tenants.models import Tenant

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def create_tenant(slug: str, name: str, branding: dict | None = None, policy: dict | None = None) -> Tenant:
    if not SLUG_RE.match(slug or ""):
        raise InvalidInput("slug must be 1-63 lowercase letters, digits or dashes")
    if not (name or "").strip():
        raise InvalidInput("name must not be empty")
    if db.session.scalar(db.select(Tenant).filter_by(slug=slug)):
        raise Conflict(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name.strip(), branding=branding or {}, policy=policy or {})
    db.session.add(tenant)
    db.session.commit()
    return tenant


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
