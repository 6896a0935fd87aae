"""Managing registered clients (operators: `tessera clients …`, later the admin API): list, show,
update, rotate the secret, delete. Each write is validated by the registration checks of
``app.oidc.clients``, audited with the caller's actor, and committed here; the cache version bump
(``app.caches``) makes every process forget the old registration."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_

from app import audit
from app.dbutil import delete_dependents
from app.errors import InvalidInput
from app.extensions import db
from app.oidc.clients import (
    SECRET_AUTH_METHODS, check_acr_values, check_secret_choice, check_endpoint_uri, check_name, check_post_logout_redirect_uris,
    check_redirect_uris, client_metadata, load_client_row, resolve_sector_identifier,
)
from app.oidc.models import Client, Token
from app.security import client_secret_hash, is_legacy_secret_hash, new_secret, upgrade_legacy_secret_hash, utcnow
from app.tenants.models import Tenant
from app.tenants.service import get_tenant

#: The fields ``update_client`` changes (each None = unchanged).
UPDATABLE = ("name", "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri",
             "frontchannel_logout_uri", "events_endpoint", "trusted", "scope", "default_acr_values")


def list_clients(tenant: str | None = None, search: str | None = None) -> list[Client]:
    """Clients by tenant slug then name; ``search`` matches a part of the client_id or of the name,
    ignoring case. An unknown tenant is an error."""
    query = db.select(Client).join(Tenant, Client.tenant_id == Tenant.id).order_by(Tenant.slug, Client.name, Client.id)
    if tenant is not None:
        query = query.where(Client.tenant_id == get_tenant(tenant).id)
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(func.lower(Client.client_id).like(pattern, escape="\\"),
                                func.lower(Client.name).like(pattern, escape="\\")))
    return list(db.session.scalars(query))


def live_token_count(client: Client) -> int:
    """Tokens of the client not revoked whose access token or refresh token still works."""
    now = int(time.time())
    return db.session.scalar(db.select(func.count(Token.id)).where(
        Token.client_id == client.id, Token.revoked_at.is_(None),
        or_(Token.issued_at + Token.expires_in > now,
            (Token.refresh_expires_at > now) & Token.refresh_used_at.is_(None))))


def client_details(client: Client) -> dict:
    """``client_metadata`` and what an operator needs besides: creation time, whether it has a
    secret, when the grace of a replaced secret ends, its live tokens."""
    grace = client.previous_secret_expires_at
    return {**client_metadata(client), "created_at": client.created_at, "has_secret": bool(client.secret_hash),
            "previous_secret_expires_at": grace if client.previous_secret_hash and grace and grace > utcnow() else None,
            "live_tokens": live_token_count(client)}


def update_client(client_id: str, *, actor: str, **changes) -> Client:
    """Change the given fields of a client (``UPDATABLE``; None leaves a field as it is), checked by
    the same rules as registration. New redirect URIs replace the list and must keep a pairwise
    client's sector (its subjects would change otherwise). Audited as ``client.updated``."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise InvalidInput("nothing to change: give at least one field")
    row = load_client_row(client_id)
    values = _checked(row, changes)
    for field, value in values.items():
        setattr(row, field, value)
    audit.record("client.updated", actor=actor, client_id=row.id, client=row.client_id, changed=sorted(values))
    db.session.commit()
    return row


def _checked(row: Client, changes: dict) -> dict:
    public = row.is_public
    values: dict = {}
    if "name" in changes:
        values["name"] = check_name(changes["name"])
    if "redirect_uris" in changes:
        values["redirect_uris"] = check_redirect_uris(list(changes["redirect_uris"]), row.grant_types, public)
        _keep_sector(row, values["redirect_uris"])
    if "post_logout_redirect_uris" in changes:
        values["post_logout_redirect_uris"] = check_post_logout_redirect_uris(
            list(changes["post_logout_redirect_uris"]), public)
    for field in ("backchannel_logout_uri", "frontchannel_logout_uri", "events_endpoint"):
        if field in changes:
            values[field] = check_endpoint_uri(changes[field], field)
    if "trusted" in changes:
        values["trusted"] = bool(changes["trusted"])
    if "default_acr_values" in changes:
        values["default_acr_values"] = check_acr_values(list(changes["default_acr_values"]))
    if "scope" in changes:
        scope = " ".join(dict.fromkeys(changes["scope"].split()))
        if not scope:
            raise InvalidInput("scope must not be empty")
        values["scope"] = scope
    return values


def _keep_sector(row: Client, redirect_uris: list[str]) -> None:
    if row.subject_type != "pairwise":
        return
    sector = resolve_sector_identifier(redirect_uris, row.sector_identifier_uri, row.client_id)
    if sector != row.sector_identifier:
        raise InvalidInput(f"these redirect URIs put the client in the sector {sector!r}, not its own "
                           f"{row.sector_identifier!r}: its users' subjects would change (register a new client)")


@dataclass
class RotatedSecret:
    client: Client
    client_secret: str
    previous_valid_until: datetime | None


def rotate_client_secret(client_id: str, *, actor: str, grace_seconds: int | None = None,
                         client_secret: str | None = None) -> RotatedSecret:
    """Give a client a new secret (generated, 256 bits, or ``client_secret`` if strong: the rules of
    registration) and keep the current one valid for ``grace_seconds`` (default
    ``TESSERA_CLIENT_SECRET_GRACE_SECONDS``; 0 ends it at once). A secret an earlier rotation kept
    stops at once. Only keyed hashes are stored. Audited as ``client.secret_rotated``."""
    if grace_seconds is None:
        grace_seconds = current_app.config["TESSERA_CLIENT_SECRET_GRACE_SECONDS"]
    if grace_seconds < 0:
        raise InvalidInput("the grace period must be 0 seconds or more")
    row = load_client_row(client_id)
    if row.token_endpoint_auth_method not in SECRET_AUTH_METHODS:
        raise InvalidInput(f"client {client_id!r} authenticates with {row.token_endpoint_auth_method!r}: "
                           "it has no secret to rotate")
    check_secret_choice(client_secret, row.token_endpoint_auth_method)
    secret = client_secret or new_secret(32)
    old = row.secret_hash
    if old and grace_seconds > 0:
        row.previous_secret_hash = upgrade_legacy_secret_hash(old) if is_legacy_secret_hash(old) else old
        row.previous_secret_expires_at = utcnow() + timedelta(seconds=grace_seconds)
    else:
        row.previous_secret_hash = row.previous_secret_expires_at = None
    row.secret_hash = client_secret_hash(secret)
    audit.record("client.secret_rotated", actor=actor, client_id=row.id, client=row.client_id,
                 grace_seconds=grace_seconds)
    db.session.commit()
    return RotatedSecret(client=row, client_secret=secret, previous_valid_until=row.previous_secret_expires_at)


def delete_client(client_id: str, *, actor: str, force: bool = False) -> dict[str, int]:
    """Delete a client with what is its alone: tokens (which stop working at once), consents,
    codes, interactions, session links, queued messages, its partner contract; references in
    shared rows (audit events, the partner API's provenance and change log) become null. Subject
    mappings belong to sectors, not clients, and stay: a ``sub`` is never handed to anyone else.
    Refused while the client holds live tokens unless ``force``. Audited as ``client.deleted``;
    returns the rows deleted per table."""
    row = load_client_row(client_id)
    live = live_token_count(row)
    if live and not force:
        raise InvalidInput(f"client {client_id!r} holds {live} live token(s); confirm to delete it and revoke them")
    try:
        deleted = delete_dependents(Client.__table__, [row.id])
    except ValueError as exc:
        db.session.rollback()
        raise InvalidInput(f"client {client_id!r} cannot be deleted: {exc}") from None
    audit.record("client.deleted", actor=actor, client=row.client_id, tenant=row.tenant.slug, name=row.name,
                 live_tokens=live, deleted=deleted)
    db.session.delete(row)
    db.session.commit()
    return deleted

