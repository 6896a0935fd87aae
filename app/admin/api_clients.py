"""Admin API: tenants and clients (``/tenants``, ``/clients``), over the services the CLI uses
(``app.tenants.service``, ``app.oidc.clients``, ``app.oidc.client_admin``,
``app.partners.contracts``).

A tenant admin sees and changes its own tenant and its clients only; it may not create or delete
tenants, and only a super admin gives a client an admin scope (``roles.admin_scopes_in``).
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from app import audit
from app.admin.blueprint import (
    answer, body, bp, check_if_match, field, only_fields, page, principal, refuse, string_list, unknown,
)
from app.admin.openapi import openapi_document
from app.admin.principals import admin_required
from app.admin.reach import client_in_reach, clients_query, tenants_query
from app.admin.roles import admin_scopes_in
from app.extensions import db
from app.oidc.client_admin import client_details, delete_client, rotate_client_secret, update_client
from app.oidc.clients import create_client, set_client_disabled
from app.oidc.models import Client
from app.partners.contracts import set_contract
from app.partners.models import DataContract
from app.tenants.models import Tenant
from app.tenants.service import client_count, create_tenant, delete_tenant, update_tenant


@bp.get("/openapi.json")
def openapi():
    """The API's contract (public: it holds no data)."""
    return jsonify(openapi_document(current_app.config["TESSERA_ISSUER"]))


# --- tenants -------------------------------------------------------------------------------------

def tenant_to_dict(tenant: Tenant) -> dict:
    return {**tenant.to_dict(), "created_at": tenant.created_at, "clients": client_count(tenant)}


def _tenant(slug: str, *, lock: bool = False) -> Tenant:
    query = tenants_query(principal()).filter_by(slug=slug)
    tenant = db.session.scalar(query.with_for_update() if lock else query)
    if tenant is None:
        raise unknown(f"tenant {slug!r}")
    return tenant


@bp.get("/tenants")
@admin_required
def tenants_list():
    principal().require("tenants", "read")
    return page(tenants_query(principal()), Tenant.id, tenant_to_dict)


@bp.post("/tenants")
@admin_required
def tenants_create():
    principal().require("tenants", "create")
    data = body()
    only_fields(data, ("slug", "name", "branding", "policy"))
    branding = field(data, "branding", dict) or {}
    policy = field(data, "policy", dict) or {}
    only_fields(branding, ("primary_color", "logo_uri"))
    tenant = create_tenant(field(data, "slug", str, required=True), field(data, "name", str, required=True),
                           branding=branding, policy=_policy(policy))
    audit.record("tenant.created", actor=principal().actor, tenant=tenant.slug)
    db.session.commit()
    return answer(tenant_to_dict(tenant), 201, etag=True)


def _policy(policy: dict) -> dict:
    only_fields(policy, ("trust_all_clients", "login_chain", "require_mfa"))
    out = {}
    for flag in ("trust_all_clients", "require_mfa"):
        if flag in policy:
            out[flag] = field(policy, flag, bool)
    if "login_chain" in policy:
        out["login_chain"] = string_list(policy, "login_chain")
    return out


@bp.get("/tenants/<slug>")
@admin_required
def tenants_show(slug: str):
    principal().require("tenants", "read")
    return answer(tenant_to_dict(_tenant(slug)), etag=True)


@bp.patch("/tenants/<slug>")
@admin_required
def tenants_update(slug: str):
    principal().require("tenants", "update")
    data = body()
    only_fields(data, ("name", "branding", "policy"))
    branding = field(data, "branding", dict) or {}
    only_fields(branding, ("primary_color", "logo_uri"))
    policy = _policy(field(data, "policy", dict) or {})
    tenant = _tenant(slug, lock=True)
    check_if_match(tenant_to_dict(tenant))
    chain = policy.get("login_chain") or []
    if chain and principal().tenant_id is not None:
        own = set(db.session.scalars(db.select(Client.client_id).where(Client.client_id.in_(chain),
                                                                      Client.tenant_id == tenant.id)))
        if set(chain) - own:
            raise refuse(403, "forbidden", "a tenant admin chains only its own tenant's clients")
    for key in ("primary_color", "logo_uri"):
        if key in branding and not isinstance(branding[key], (str, type(None))):
            raise refuse(400, "invalid_request", f"branding.{key} must be a string or null")
    tenant = update_tenant(
        slug, actor=principal().actor, name=field(data, "name", str),
        color=("" if branding.get("primary_color") is None else branding["primary_color"]) if "primary_color" in branding else None,
        logo_uri=("" if branding.get("logo_uri") is None else branding["logo_uri"]) if "logo_uri" in branding else None,
        trust_all_clients=policy.get("trust_all_clients"), login_chain=policy.get("login_chain"),
        require_mfa=policy.get("require_mfa"))
    return answer(tenant_to_dict(tenant), etag=True)


@bp.delete("/tenants/<slug>")
@admin_required
def tenants_delete(slug: str):
    """Delete a tenant nothing refers to (409 naming what still does)."""
    principal().require("tenants", "delete")
    _tenant(slug)
    return answer({"deleted": delete_tenant(slug, actor=principal().actor)})


# --- clients -------------------------------------------------------------------------------------

def _client(client_id: str, *, lock: bool = False) -> Client:
    return client_in_reach(principal(), client_id, lock=lock)


def _client_answer(row: Client, status: int = 200, **extra):
    return answer({**client_details(row), **extra}, status, etag=not extra)


def _no_admin_scopes(scope: str | None) -> None:
    if scope and admin_scopes_in(scope) and principal().role != "super":
        raise refuse(403, "forbidden", "only a super admin gives a client an admin scope")


@bp.get("/clients")
@admin_required
def clients_list():
    principal().require("clients", "read")
    query = clients_query(principal())
    tenant = field_arg("tenant")
    if tenant is not None:
        tenant_id = db.session.scalar(db.select(Tenant.id).filter_by(slug=tenant))
        query = query.where(Client.tenant_id == (tenant_id or -1))
    search = field_arg("q")
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(db.or_(db.func.lower(Client.client_id).like(pattern, escape="\\"),
                                   db.func.lower(Client.name).like(pattern, escape="\\")))
    return page(query, Client.id, client_details)


def field_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and (len(value) > 200 or "\x00" in value):
        raise refuse(400, "invalid_request", f"{name} is too long")
    return value


_CREATE_FIELDS = ("tenant", "client_name", "redirect_uris", "post_logout_redirect_uris", "token_endpoint_auth_method",
                  "subject_type", "sector_identifier_uri", "trusted", "grant_types", "scope", "jwks",
                  "id_token_signed_response_alg", "backchannel_logout_uri", "frontchannel_logout_uri",
                  "initiate_login_uri", "events_endpoint", "client_id", "default_acr_values")


@bp.post("/clients")
@admin_required
def clients_create():
    principal().require("clients", "create")
    data = body()
    only_fields(data, _CREATE_FIELDS)
    tenant = field(data, "tenant", str, required=True)
    tenant_id = db.session.scalar(db.select(Tenant.id).filter_by(slug=tenant))
    if tenant_id is None or not principal().reaches_tenant(tenant_id):
        raise unknown(f"tenant {tenant!r}")
    scope = field(data, "scope", str)
    _no_admin_scopes(scope)
    registered = create_client(
        tenant=tenant, name=field(data, "client_name", str, required=True),
        redirect_uris=string_list(data, "redirect_uris") or [],
        post_logout_redirect_uris=string_list(data, "post_logout_redirect_uris"),
        auth_method=field(data, "token_endpoint_auth_method", str),
        subject_type=field(data, "subject_type", str) or "pairwise",
        sector_identifier_uri=field(data, "sector_identifier_uri", str), trusted=bool(field(data, "trusted", bool)),
        grant_types=string_list(data, "grant_types"), scope=scope, jwks=field(data, "jwks", dict),
        id_token_signed_response_alg=field(data, "id_token_signed_response_alg", str) or "RS256",
        backchannel_logout_uri=field(data, "backchannel_logout_uri", str),
        frontchannel_logout_uri=field(data, "frontchannel_logout_uri", str),
        initiate_login_uri=field(data, "initiate_login_uri", str), events_endpoint=field(data, "events_endpoint", str),
        client_id=field(data, "client_id", str), default_acr_values=string_list(data, "default_acr_values"))
    row = registered.client
    audit.record("client.created", actor=principal().actor, client_id=row.id, client=row.client_id)
    db.session.commit()
    return _client_answer(row, 201, client_secret=registered.client_secret)


@bp.get("/clients/<client_id>")
@admin_required
def clients_show(client_id: str):
    principal().require("clients", "read")
    return _client_answer(_client(client_id))


_UPDATE_FIELDS = {"client_name": "name", "redirect_uris": "redirect_uris",
                  "post_logout_redirect_uris": "post_logout_redirect_uris",
                  "backchannel_logout_uri": "backchannel_logout_uri", "frontchannel_logout_uri": "frontchannel_logout_uri",
                  "events_endpoint": "events_endpoint", "trusted": "trusted", "scope": "scope",
                  "default_acr_values": "default_acr_values"}


@bp.patch("/clients/<client_id>")
@admin_required
def clients_update(client_id: str):
    principal().require("clients", "update")
    data = body()
    only_fields(data, _UPDATE_FIELDS)
    changes = {}
    for name, service_name in _UPDATE_FIELDS.items():
        if name in ("redirect_uris", "post_logout_redirect_uris", "default_acr_values"):
            changes[service_name] = string_list(data, name)
        elif name == "trusted":
            changes[service_name] = field(data, name, bool)
        elif name.endswith("_uri") or name == "events_endpoint":
            # null removes an endpoint
            changes[service_name] = "" if name in data and data[name] is None else field(data, name, str, nullable=True)
        else:
            changes[service_name] = field(data, name, str)
    _no_admin_scopes(changes.get("scope"))
    row = _client(client_id, lock=True)
    check_if_match(client_details(row))
    if principal().role != "super" and admin_scopes_in(row.scope) and changes.get("scope") is not None:
        raise refuse(403, "forbidden", "only a super admin changes the scopes of a client holding an admin scope")
    row = update_client(client_id, actor=principal().actor, **changes)
    return _client_answer(row)


def _set_disabled(client_id: str, disabled: bool):
    principal().require("clients", "update")
    _client(client_id)
    return _client_answer(set_client_disabled(client_id, disabled, actor=principal().actor))


@bp.post("/clients/<client_id>/disable")
@admin_required
def clients_disable(client_id: str):
    return _set_disabled(client_id, True)


@bp.post("/clients/<client_id>/enable")
@admin_required
def clients_enable(client_id: str):
    return _set_disabled(client_id, False)


@bp.post("/clients/<client_id>/rotate-secret")
@admin_required
def clients_rotate_secret(client_id: str):
    principal().require("clients", "secret")
    data = body() if request.get_data(cache=True) else {}
    only_fields(data, ("grace_seconds",))
    grace = field(data, "grace_seconds", int)
    if grace is not None and not 0 <= grace <= 30 * 86400:
        raise refuse(400, "invalid_request", "grace_seconds must be from 0 to 2592000 (30 days)")
    _client(client_id)
    rotated = rotate_client_secret(client_id, actor=principal().actor, grace_seconds=grace)
    return _client_answer(rotated.client, client_secret=rotated.client_secret,
                          previous_secret_valid_until=rotated.previous_valid_until)


@bp.delete("/clients/<client_id>")
@admin_required
def clients_delete(client_id: str):
    principal().require("clients", "delete")
    force = request.args.get("force", "false")
    if force not in ("true", "false"):
        raise refuse(400, "invalid_request", "force must be true or false")
    _client(client_id)
    deleted = delete_client(client_id, actor=principal().actor, force=force == "true")
    return answer({"client_id": client_id, "deleted": deleted})


# --- data contracts (partner API) and event subscriptions -----------------------------------------

def contract_to_dict(row: Client) -> dict:
    contract = db.session.scalar(db.select(DataContract).filter_by(client_id=row.id))
    return {"client_id": row.client_id,
            "read": list(contract.read_claims) if contract else [], "write": list(contract.write_claims) if contract else [],
            "subscribe": bool(contract.subscribe) if contract else False,
            "write_acr": contract.write_acr if contract else None,
            "token_exchange": "urn:ietf:params:oauth:grant-type:token-exchange" in row.grant_types,
            "events_endpoint": row.events_endpoint}


@bp.get("/clients/<client_id>/contract")
@admin_required
def clients_contract(client_id: str):
    principal().require("clients", "read")
    return answer(contract_to_dict(_client(client_id)), etag=True)


@bp.put("/clients/<client_id>/contract")
@admin_required
def clients_set_contract(client_id: str):
    principal().require("clients", "update")
    data = body()
    only_fields(data, ("read", "write", "subscribe", "token_exchange", "write_acr"))
    read, write = string_list(data, "read"), string_list(data, "write")
    subscribe, token_exchange = field(data, "subscribe", bool), field(data, "token_exchange", bool)
    write_acr = field(data, "write_acr", str, nullable=True)
    row = _client(client_id, lock=True)
    check_if_match(contract_to_dict(row))
    row, _ = set_contract(client_id, read=read or [], write=write or [], subscribe=bool(subscribe),
                          token_exchange=token_exchange, write_acr=write_acr, actor=principal().actor)
    return answer(contract_to_dict(row), etag=True)
