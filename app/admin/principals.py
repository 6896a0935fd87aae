"""Who is calling the admin API: a bearer access token issued by the hub itself, turned into a
``Principal`` (actor, role, reach) on ``g.principal``.

- A client credentials token: its role is the one admin scope it carries (``roles.CLIENT_SCOPES``);
  a tenant admin client reaches its own tenant. Actor ``client:<client_id>``.
- A person's token (the console's code flow with PKCE, or any client registered with the
  ``admin`` scope): it must carry ``admin``, and the role is the person's ``AdminRole``. Actor
  ``admin:<account id>``.

Refusals are RFC 9457 problems: 401 (no, bad or dead token: ``WWW-Authenticate`` says so),
403 ``insufficient_scope`` (no admin scope or role), 403 ``forbidden`` (the role may not do this).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from app.admin.roles import CLIENT_SCOPES, PERMISSIONS, PERSON_SCOPE, role_of
from app.errors import TesseraError
from app.extensions import limiter
from app.oidc.bearer import find_access_token
from app.oidc.clients import get_client, get_client_by_pk


class AdminRefusal(TesseraError):
    """A refusal of the admin API with its status and stable ``reason``."""

    def __init__(self, status: int, reason: str, title: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.reason, self.title, self.headers = status, reason, title, headers or {}


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    #: The tenant a tenant admin reaches (None: every tenant).
    tenant_id: int | None
    account_id: int | None = None

    def may(self, resource: str, action: str) -> bool:
        return (resource, action) in PERMISSIONS[self.role]

    def require(self, resource: str, action: str) -> None:
        if not self.may(resource, action):
            raise AdminRefusal(403, "forbidden", "Forbidden",
                               f"the {self.role} role may not {action} {resource}")

    def reaches_tenant(self, tenant_id: int) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def to_dict(self) -> dict:
        return {"actor": self.actor, "role": self.role, "tenant_id": self.tenant_id, "account_id": self.account_id}


def _invalid(detail: str) -> AdminRefusal:
    return AdminRefusal(401, "token_invalid", "Invalid token", detail, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def principal_from_token(token_string: str) -> Principal:
    """The principal an access token stands for, or an ``AdminRefusal``."""
    token = find_access_token(token_string)
    client = get_client_by_pk(token.client_id) if token is not None else None
    if token is None or not token.is_active() or client is None or client.disabled:
        raise _invalid("the access token is invalid, expired or revoked")
    scopes = set(token.scope.split())
    if token.account_id is None:
        roles = {CLIENT_SCOPES[s] for s in scopes if s in CLIENT_SCOPES}
        if len(roles) != 1:
            raise AdminRefusal(403, "insufficient_scope", "Insufficient scope",
                               "the token must carry exactly one admin scope: " + ", ".join(CLIENT_SCOPES),
                               {"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
        role = roles.pop()
        return Principal(actor=f"client:{client.client_id}", role=role,
                         tenant_id=client.tenant_id if role == "tenant_admin" else None)
    if PERSON_SCOPE not in scopes:
        raise AdminRefusal(403, "insufficient_scope", "Insufficient scope", f"the token lacks the {PERSON_SCOPE!r} scope",
                           {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{PERSON_SCOPE}"'})
    row = role_of(token.account_id)
    if row is None:
        raise AdminRefusal(403, "not_an_admin", "Forbidden", "this person holds no admin role")
    return Principal(actor=f"admin:{token.account_id}", role=row.role, tenant_id=row.tenant_id,
                     account_id=token.account_id)


def describe_actor(actor: str) -> str | None:
    """What a person reads about an event an admin caused on their account (the registry
    ``actor_descriptions``, app.accounts.history): an admin person (``admin:<id>``) or an admin
    client (``client:<id>`` registered with an admin scope) is "an administrator", never named."""
    kind, _, name = actor.partition(":")
    if kind == "admin":
        return "by an administrator"
    if kind == "client":
        client = get_client(name)
        if client is not None and any(scope in CLIENT_SCOPES for scope in client.scope.split()):
            return "by an administrator"
    return None


def _rate_limit() -> str:
    return current_app.config["TESSERA_ADMIN_RATE_LIMIT"]


def _principal_key() -> str:
    return f"admin:{g.principal.actor}"


def admin_required(view):
    """The request carries a live admin token: ``g.principal`` is set, then the caller's rate
    limit (``TESSERA_ADMIN_RATE_LIMIT``, per actor) applies."""
    limited = limiter.limit(_rate_limit, key_func=_principal_key)(view)

    @wraps(view)
    def wrapper(*args, **kwargs):
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer " or not auth[7:].strip():
            raise AdminRefusal(401, "token_missing", "Authentication required", "send a bearer access token",
                               {"WWW-Authenticate": 'Bearer realm="tessera-admin"'})
        g.principal = principal_from_token(auth[7:].strip())
        return limited(*args, **kwargs)
    return wrapper
