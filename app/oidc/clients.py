"""Client registration: validates metadata (OIDC Registration 2, RFC 7591 2, RFC 8252) and stores
the client with its secret hashed. The clear secret is returned once, to the caller."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from urllib.parse import urlsplit

from flask import current_app

from app import audit
from app.caches import caches, freeze, watch
from app.oidc.assurance import ACR_VALUES_SUPPORTED
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.net import OutboundError, fetch
from app.oidc.keys import SUPPORTED_ALGS
from app.oidc.models import DEFAULT_CLIENT_SCOPE, Client, ClientRules
from app.oidc.redirects import is_loopback_host, validate_redirect_uri
from app.oidc.subjects import PUBLIC_SECTOR
from app.security import client_secret_hash, client_secret_weakness, new_secret
from app.tenants.models import Tenant, TenantInfo
from app.tenants.service import get_tenant

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
SUBJECT_TYPES = ("pairwise", "public")
CLIENTS_CACHE = "clients"


@dataclass
class RegisteredClient:
    client: Client
    client_secret: str | None


def check_acr_values(values: list[str] | None) -> list[str] | None:
    """Registration 2 ``default_acr_values``: values this hub asserts (``app.oidc.assurance``);
    empty means none."""
    if not values:
        return None
    unknown = [v for v in values if v not in ACR_VALUES_SUPPORTED]
    if unknown:
        raise InvalidInput(f"unsupported acr values {', '.join(map(repr, unknown))}: "
                           f"one of {', '.join(ACR_VALUES_SUPPORTED)}")
    return list(dict.fromkeys(values))


def check_endpoint_uri(uri: str | None, what: str) -> str | None:
    """A logout, login-initiation or events endpoint of the client: https with a host, or http on a
    loopback host; empty means none."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return uri
    raise InvalidInput(f"{what} must be an https URL (http only on loopback hosts): {uri!r}")


def resolve_sector_identifier(redirect_uris: list[str], sector_identifier_uri: str | None, client_id: str) -> str:
    """The sector of a pairwise client (OIDC Core 8.1).

    With a ``sector_identifier_uri``, fetch it: a JSON array that must list every redirect URI;
    the sector is its host. Without one, the redirect URIs' hosts must be one host, which is the
    sector. Loopback and private-use-scheme redirects (native apps, RFC 8252) name no host of the
    client's own, so a client with only those is a sector of its own (``client:<client_id>``):
    two native apps must not share subjects just because both listen on 127.0.0.1.
    """
    if sector_identifier_uri:
        parts = urlsplit(sector_identifier_uri)
        allow_http = current_app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"]
        if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
            raise InvalidInput("sector_identifier_uri must use https")
        try:
            response = fetch("GET", sector_identifier_uri, headers={"Accept": "application/json"})
            listed = response.json() if response.status_code == 200 else None
        except (OutboundError, ValueError) as exc:
            raise InvalidInput(f"sector_identifier_uri could not be fetched: {exc}") from None
        if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
            raise InvalidInput("sector_identifier_uri must return a JSON array of redirect URIs")
        missing = [u for u in redirect_uris if u not in listed]
        if missing:
            raise InvalidInput(f"sector_identifier_uri does not list these redirect URIs: {', '.join(missing)}")
        return parts.hostname
    hosts = {
        urlsplit(u).hostname for u in redirect_uris
        if urlsplit(u).scheme in ("http", "https") and not is_loopback_host(urlsplit(u).hostname)
    }
    if not hosts:
        return f"client:{client_id}"
    if len(hosts) != 1:
        raise InvalidInput(
            "redirect URIs on several hosts need a sector_identifier_uri (OIDC Core 8.1)"
        )
    return hosts.pop()


def check_name(name: str | None) -> str:
    """A client's display name, stripped: never empty."""
    if not (name or "").strip():
        raise InvalidInput("a client needs a name")
    return name.strip()


def check_redirect_uris(redirect_uris: list[str], grant_types: list[str], public: bool) -> list[str]:
    """The redirect URIs, de-duplicated in order, each validated (``app.oidc.redirects``); a client
    of the authorization code grant needs at least one."""
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidInput("a client of the authorization code grant needs at least one redirect URI")
    return [validate_redirect_uri(u, public=public) for u in dict.fromkeys(redirect_uris)]


def check_post_logout_redirect_uris(uris: list[str] | None, public: bool) -> list[str]:
    """The post-logout redirect URIs: the same rules as redirect URIs, none required."""
    return [validate_redirect_uri(u, public=public) for u in dict.fromkeys(uris or [])]


def check_secret_choice(client_secret: str | None, auth_method: str) -> None:
    """An operator-chosen secret: only for the secret auth methods, and strong (``app.security``)."""
    if client_secret is None:
        return
    if auth_method not in SECRET_AUTH_METHODS:
        raise InvalidInput(f"a client that authenticates with {auth_method!r} has no secret")
    if weakness := client_secret_weakness(client_secret):
        raise InvalidInput(weakness)


def _check_grant_types(grant_types: list[str] | None, public: bool) -> list[str]:
    grant_types = list(grant_types or ["authorization_code", "refresh_token"])
    unknown = set(grant_types) - {"authorization_code", "refresh_token", "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:token-exchange"}  # RFC 8693, partner API
    if unknown:
        raise InvalidInput(f"unsupported grant types: {', '.join(sorted(unknown))}")
    if public and "client_credentials" in grant_types:
        raise InvalidInput("a public client cannot use client_credentials")
    return grant_types


def create_client(
    *, tenant: str, name: str, redirect_uris: list[str], post_logout_redirect_uris: list[str] | None = None,
    public: bool = False, auth_method: str | None = None, subject_type: str = "pairwise",
    sector_identifier_uri: str | None = None, trusted: bool = False, grant_types: list[str] | None = None,
    scope: str | None = None, jwks: dict | None = None, id_token_signed_response_alg: str = "RS256",
    backchannel_logout_uri: str | None = None, frontchannel_logout_uri: str | None = None,
    initiate_login_uri: str | None = None, client_id: str | None = None, client_secret: str | None = None,
    login_chain: list[str] | None = None, events_endpoint: str | None = None,
    default_acr_values: list[str] | None = None,
) -> RegisteredClient:
    tenant_row = get_tenant(tenant)
    name = check_name(name)
    auth_method = auth_method or ("none" if public else "client_secret_basic")
    if auth_method not in AUTH_METHODS:
        raise InvalidInput(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if public and auth_method != "none":
        raise InvalidInput("a public client authenticates with 'none'")
    public = auth_method == "none"
    if subject_type not in SUBJECT_TYPES:
        raise InvalidInput(f"subject type must be one of {', '.join(SUBJECT_TYPES)}")
    if id_token_signed_response_alg not in SUPPORTED_ALGS:
        raise InvalidInput(f"id_token_signed_response_alg must be one of {', '.join(SUPPORTED_ALGS)}")
    if auth_method == "private_key_jwt" and not (jwks and isinstance(jwks.get("keys"), list)):
        raise InvalidInput("a private_key_jwt client must register its public keys (jwks)")
    check_secret_choice(client_secret, auth_method)

    grant_types = _check_grant_types(grant_types, public)
    redirect_uris = check_redirect_uris(redirect_uris, grant_types, public)
    post_logout = check_post_logout_redirect_uris(post_logout_redirect_uris, public)

    client_id = client_id or secrets.token_hex(16)
    # Public-subject clients share the sector ":public"; only pairwise ones need their own.
    sector = (resolve_sector_identifier(redirect_uris, sector_identifier_uri, client_id)
              if subject_type == "pairwise" else PUBLIC_SECTOR)

    secret = None
    if auth_method in SECRET_AUTH_METHODS:
        secret = client_secret or new_secret(32)
    client = Client(
        client_id=client_id,
        tenant_id=tenant_row.id,
        name=name,
        secret_hash=client_secret_hash(secret) if secret else None,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        grant_types=grant_types,
        response_types=["code"] if "authorization_code" in grant_types else [],
        scope=scope or DEFAULT_CLIENT_SCOPE,
        token_endpoint_auth_method=auth_method,
        subject_type=subject_type,
        sector_identifier=sector,
        sector_identifier_uri=sector_identifier_uri,
        trusted=trusted,
        jwks=jwks,
        id_token_signed_response_alg=id_token_signed_response_alg,
        backchannel_logout_uri=check_endpoint_uri(backchannel_logout_uri, "backchannel_logout_uri"),
        frontchannel_logout_uri=check_endpoint_uri(frontchannel_logout_uri, "frontchannel_logout_uri"),
        initiate_login_uri=check_endpoint_uri(initiate_login_uri, "initiate_login_uri"),
        login_chain=login_chain,
        events_endpoint=check_endpoint_uri(events_endpoint, "events_endpoint"),
        default_acr_values=check_acr_values(default_acr_values),
    )
    if db.session.scalar(db.select(Client.id).filter_by(client_id=client.client_id)):
        raise InvalidInput(f"client_id {client.client_id!r} is taken")
    db.session.add(client)
    db.session.commit()
    return RegisteredClient(client=client, client_secret=secret)


@dataclass(frozen=True, slots=True)
class ClientInfo(ClientRules):
    """A client's registration as every request but its writers sees it: a frozen snapshot of the
    row's columns (lists as tuples, JSON objects as read-only mappings) and of its tenant, with
    the methods Authlib calls (``ClientRules``). Cached across requests, so it never holds an ORM
    row; code that changes a client loads the row (``load_client_row``)."""

    id: int
    client_id: str
    tenant_id: int
    tenant: TenantInfo
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    scope: str
    token_endpoint_auth_method: str
    subject_type: str
    sector_identifier: str
    sector_identifier_uri: str | None
    trusted: bool
    jwks: MappingProxyType | None
    id_token_signed_response_alg: str
    initiate_login_uri: str | None
    login_chain: tuple[str, ...] | None
    default_acr_values: tuple[str, ...] | None
    frontchannel_logout_uri: str | None
    backchannel_logout_uri: str | None
    events_endpoint: str | None
    disabled: bool
    created_at: datetime
    previous_secret_hash: str | None
    previous_secret_expires_at: datetime | None

    @classmethod
    def of(cls, row: Client) -> ClientInfo:
        # Every column, by name: a column added to Client without its field here fails at once.
        columns = {column.key: freeze(getattr(row, column.key)) for column in Client.__table__.columns}
        return cls(**columns, tenant=TenantInfo.of(row.tenant))


# Any change to a client or a tenant (a client snapshot holds its tenant's values) drops the
# client snapshots in every process (app/caches.py).
watch(Client, CLIENTS_CACHE)
watch(Tenant, CLIENTS_CACHE)


def _load(**by) -> ClientInfo | None:
    # populate_existing: a long-lived session (a worker) may hold the row as it was loaded before.
    row = db.session.scalar(db.select(Client).filter_by(**by).execution_options(populate_existing=True))
    return ClientInfo.of(row) if row is not None else None


def get_client(client_id: str) -> ClientInfo | None:
    """The client registered under ``client_id`` (disabled ones too: see ``usable_client``), from a
    per-process cache (clients are read on every token and userinfo request). Dropped in every
    process within ``TESSERA_CACHE_CHECK_INTERVAL`` of a change, kept ``TESSERA_CLIENT_CACHE_TTL``
    seconds at most."""
    if not client_id:
        return None
    return caches().lookup(CLIENTS_CACHE, client_id, lambda: _load(client_id=client_id),
                           current_app.config["TESSERA_CLIENT_CACHE_TTL"])


def get_client_by_pk(pk: int) -> ClientInfo | None:
    """``get_client`` by the row id (tokens, codes and consents name their client by it)."""
    return caches().lookup(CLIENTS_CACHE, ("pk", pk), lambda: _load(id=pk),
                           current_app.config["TESSERA_CLIENT_CACHE_TTL"])


def usable_client(client_id: str) -> ClientInfo | None:
    """The client, unless it is unknown or disabled: what every protocol endpoint accepts."""
    client = get_client(client_id)
    return client if client is not None and not client.disabled else None


def load_client_row(client_id: str) -> Client:
    """The client's row in this request's session, for a change."""
    row = db.session.scalar(db.select(Client).filter_by(client_id=client_id))
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return row


def set_client_disabled(client_id: str, disabled: bool, *, actor: str) -> Client:
    """Disable a client (every endpoint refuses it and the tokens it holds, in every process within
    ``TESSERA_CACHE_CHECK_INTERVAL``), or enable it again. Audited with ``actor``."""
    row = load_client_row(client_id)
    row.disabled = disabled
    audit.record("client.disabled" if disabled else "client.enabled", actor=actor, client_id=row.id, client=client_id)
    db.session.commit()
    return row


def client_metadata(client: Client) -> dict:
    """The client's registered metadata, in OIDC Dynamic Registration names."""
    return {
        "client_id": client.client_id,
        "client_name": client.name,
        "tenant": client.tenant.slug,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "response_types": client.response_types,
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "subject_type": client.subject_type,
        "sector_identifier": client.sector_identifier,
        "sector_identifier_uri": client.sector_identifier_uri,
        "trusted": client.trusted,
        "disabled": client.disabled,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "initiate_login_uri": client.initiate_login_uri,
        "frontchannel_logout_uri": client.frontchannel_logout_uri,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "login_chain": client.login_chain,
        "default_acr_values": client.default_acr_values,
        "events_endpoint": client.events_endpoint,
    }
