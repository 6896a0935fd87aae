"""Admin roles of people: AdminRole (one per account: super admin, tenant admin of one tenant,
support or auditor). Clients get theirs from their token's admin scopes (app.admin.principals)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.security import utcnow

#: Super admin; tenant admin (its tenant's clients, and people related to its tenant); support
#: (find people, lock/unlock, end sessions: never secrets or keys); auditor (read-only).
ROLES = ("super", "tenant_admin", "support", "auditor")


class AdminRole(db.Model):
    """A person's role in the admin API and console. A tenant admin has a tenant; the others none."""

    __tablename__ = "admin_roles"
    __table_args__ = (
        CheckConstraint("(role = 'tenant_admin') = (tenant_id IS NOT NULL)", name="tenant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    granted_by: Mapped[str] = mapped_column(String(100))
