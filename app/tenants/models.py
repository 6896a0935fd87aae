"""Tenant: a subsidiary, its slug, policies and branding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from app.caches import freeze
from app.extensions import db
from app.security import utcnow


class Tenant(db.Model):
    __tablename__ = "tenants"
    #: SQLite reuses the highest rowid after a delete; a deleted tenant's id must never come back
    #: (usernames and audit trails name tenants by it). PostgreSQL sequences never go back.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: {"primary_color": "#0b5394", "logo_uri": "..."} shown on the hub's pages for this tenant.
    branding: Mapped[dict] = mapped_column(JSON, default=dict)
    #: {"anchor": "phone", "consent": "explicit"|"trusted_only", ...} — see docs/configuration.md.
    policy: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def to_dict(self) -> dict:
        return {"id": self.id, "slug": self.slug, "name": self.name,
                "branding": self.branding or {}, "policy": self.policy or {}}


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """A tenant as the hot paths see it (inside a cached ``ClientInfo``): plain, read-only values."""

    id: int
    slug: str
    name: str
    branding: MappingProxyType
    policy: MappingProxyType

    @classmethod
    def of(cls, tenant: Tenant) -> TenantInfo:
        return cls(id=tenant.id, slug=tenant.slug, name=tenant.name,
                   branding=freeze(tenant.branding or {}), policy=freeze(tenant.policy or {}))
