"""Who may administer the hub: the four roles, what each may do, and the people who hold one.

Rules (docs/security.md, "Admin API"):

- A person holds at most one role (``AdminRole``), granted and revoked by an operator
  (``tessera admins grant|revoke``) or by a super admin through the API.
- A client holds the role its access token's admin scope names (``CLIENT_SCOPES``): the scope is
  in the client's registration only if an operator (CLI) or a super admin put it there.
- ``PERMISSIONS`` is the whole matrix: a (resource, action) pair missing from a role's set is
  refused (403). ``("users", "manage")`` (reset a password, close, export) is the super admin's
  alone: an account is the person's across the whole group, not one tenant's. A tenant admin's reach is further cut to its tenant: its clients, and people
  related to the tenant (``app.partners.relationship``); anything outside is answered as unknown
  (404), never as forbidden, so its existence does not leak.
"""

from __future__ import annotations

from app import audit
from app.admin.models import ROLES, AdminRole
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.tenants.models import Tenant
from app.tenants.service import get_tenant

#: The admin scopes a client may be registered with, and the role each gives its tokens.
CLIENT_SCOPES = {"admin:super": "super", "admin:tenant": "tenant_admin", "admin:support": "support",
                 "admin:audit": "auditor"}
#: The scope a person's access token needs (the console's login asks for it); the role is the person's.
PERSON_SCOPE = "admin"

_READ = {(resource, "read") for resource in (
    "tenants", "clients", "users", "sessions", "merges", "imports", "deliveries", "keys", "upstreams", "audit")}

PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    "super": frozenset(_READ | {
        ("tenants", "create"), ("tenants", "update"), ("tenants", "delete"),
        ("clients", "create"), ("clients", "update"), ("clients", "secret"), ("clients", "delete"),
        ("users", "support"), ("users", "manage"), ("users", "revoke"), ("sessions", "end"),
        ("merges", "manage"), ("deliveries", "retry"), ("keys", "manage"), ("upstreams", "manage"),
        ("admins", "manage"),
    }),
    "tenant_admin": frozenset({
        ("tenants", "read"), ("tenants", "update"),
        ("clients", "read"), ("clients", "create"), ("clients", "update"), ("clients", "secret"), ("clients", "delete"),
        ("users", "read"), ("users", "support"), ("users", "revoke"), ("sessions", "read"), ("sessions", "end"),
        ("merges", "read"), ("imports", "read"), ("deliveries", "read"), ("deliveries", "retry"), ("audit", "read"),
    }),
    "support": frozenset({
        ("users", "read"), ("users", "support"), ("sessions", "read"), ("sessions", "end"), ("merges", "read"),
    }),
    "auditor": frozenset(_READ),
}


def check_role(role: str, tenant: str | None):
    """The tenant a role needs (a tenant admin's), or None; InvalidInput for a bad pair."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if role == "tenant_admin" and not tenant:
        raise InvalidInput("a tenant admin needs a tenant")
    if role != "tenant_admin" and tenant:
        raise InvalidInput(f"a {role} role has no tenant (only tenant_admin has one)")
    return get_tenant(tenant) if tenant else None


def grant_role(account_id: int, role: str, *, tenant: str | None = None, actor: str) -> AdminRole:
    """Give an account a role (replacing the one it had). Audited on the account."""
    tenant_row = check_role(role, tenant)
    row = db.session.scalar(db.select(AdminRole).filter_by(account_id=account_id).with_for_update())
    if row is None:
        row = AdminRole(account_id=account_id)
        db.session.add(row)
    row.role, row.tenant_id, row.granted_by = role, tenant_row.id if tenant_row else None, actor
    audit.record("admin.role_granted", account_id=account_id, actor=actor, role=role, tenant=tenant)
    db.session.commit()
    return row


def revoke_role(account_id: int, *, actor: str) -> None:
    row = db.session.scalar(db.select(AdminRole).filter_by(account_id=account_id))
    if row is None:
        raise NotFound(f"account {account_id} holds no admin role")
    audit.record("admin.role_revoked", account_id=account_id, actor=actor, role=row.role)
    db.session.delete(row)
    db.session.commit()


def role_of(account_id: int) -> AdminRole | None:
    return db.session.scalar(db.select(AdminRole).filter_by(account_id=account_id))


def list_roles() -> list[AdminRole]:
    return list(db.session.scalars(db.select(AdminRole).order_by(AdminRole.id)))


def role_to_dict(row: AdminRole) -> dict:
    tenant = db.session.get(Tenant, row.tenant_id).slug if row.tenant_id else None
    return {"account_id": row.account_id, "role": row.role, "tenant": tenant, "granted_at": row.granted_at,
            "granted_by": row.granted_by}


def admin_scopes_in(scope: str) -> set[str]:
    """The admin scopes among a space-separated scope list (what only a super admin may give)."""
    return {s for s in scope.split() if s == PERSON_SCOPE or s in CLIENT_SCOPES}


