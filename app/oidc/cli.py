"""`tessera keys …` and `tessera clients …`: the hub's signing keys and its clients (relying parties
and partner servers). Registered by ``app.oidc.wiring``; features add subcommands to
``clients_group`` in their ``init_app`` (partners: ``clients set-contract``)."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, fail, json_option, reports_errors
from app.oidc.clients import client_metadata, create_client, set_client_disabled
from app.oidc.keys import ensure_keys, key_to_dict, list_keys, retire_key, rotate_keys


@click.group("keys")
def keys_group() -> None:
    """Signing keys."""


@keys_group.command("rotate")
@json_option
@with_appcontext
def keys_rotate(as_json: bool) -> None:
    """current → retired, next → current, and a new next key, for every algorithm."""
    rows = rotate_keys()
    if as_json:
        echo_json([key_to_dict(r) for r in rows])
    else:
        click.echo("Rotated. Current keys: " + ", ".join(f"{r.alg} {r.kid}" for r in rows if r.state == "current"))


@keys_group.command("list")
@json_option
@with_appcontext
def keys_list(as_json: bool) -> None:
    """List signing keys and their states."""
    ensure_keys()
    rows = [key_to_dict(r) for r in list_keys()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        gone = "" if r["published_until"] is None else (
            f"  {'published until' if r['published'] else 'left the JWKS'} {r['published_until']:%Y-%m-%d %H:%M}")
        click.echo(f"{r['kid']}  {r['alg']:6} {r['state']:8} created {r['created_at']:%Y-%m-%d %H:%M}{gone}")


@keys_group.command("retire")
@click.argument("kid")
@click.option("--now", is_flag=True, help="Leave the JWKS at once: tokens signed with the key fail verification.")
@json_option
@with_appcontext
@reports_errors
def keys_retire(kid, now, as_json) -> None:
    """Take a next or retired key out of the JWKS (once its tokens expired, or --now)."""
    row = retire_key(kid, actor="operator:cli", now=now)
    data = key_to_dict(row)
    if as_json:
        echo_json(data)
    else:
        when = f"{data['published_until']:%Y-%m-%d %H:%M:%S} UTC"
        click.echo(f"{kid}: retired; " + (f"it leaves the JWKS at {when}" if data["published"]
                                          else f"out of the JWKS since {when}"))


@click.group("clients")
def clients_group() -> None:
    """Relying parties and partner servers."""


@clients_group.command("create")
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--public", is_flag=True, help="A public client (native or browser app): PKCE, no secret.")
@click.option("--auth-method", type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]))
@click.option("--subject-type", type=click.Choice(["pairwise", "public"]), default="pairwise", show_default=True)
@click.option("--sector-identifier-uri")
@click.option("--trusted", is_flag=True, help="First-party client: consent is implied.")
@click.option("--grant-type", "grant_types", multiple=True,
              type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]))
@click.option("--scope", help="Space-separated scopes the client may ask for.")
@click.option("--jwks", "jwks_json", help="JWK Set (JSON) of a private_key_jwt client.")
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
@click.option("--backchannel-logout-uri")
@click.option("--frontchannel-logout-uri")
@click.option("--events-endpoint", help="Where Security Event Tokens (account merged) are pushed (RFC 8935).")
@click.option("--initiate-login-uri")
@click.option("--login-chain", "login_chain", multiple=True,
              help="client_id of a partner logged in automatically after a login here (overrides the tenant's list).")
@click.option("--client-id", "fixed_client_id", help="Use this client_id instead of a generated one.")
@click.option("--client-secret", "fixed_client_secret",
              help="Use this client secret (a client moved from another server) instead of a generated one: "
                   "at least 32 random characters and about 128 bits, or it is refused.")
@json_option
@with_appcontext
@reports_errors
def clients_create(tenant, name, redirect_uris, post_logout_redirect_uris, public, auth_method, subject_type,
                   sector_identifier_uri, trusted, grant_types, scope, jwks_json, id_token_alg,
                   backchannel_logout_uri, frontchannel_logout_uri, events_endpoint, initiate_login_uri, login_chain,
                   fixed_client_id, fixed_client_secret, as_json) -> None:
    """Register a client; prints its client_id and, once, its client_secret (generated unless
    --client-secret gives a strong one)."""
    try:
        jwks = json.loads(jwks_json) if jwks_json else None
    except ValueError as exc:
        fail(f"--jwks is not JSON: {exc}")
    registered = create_client(
        tenant=tenant, name=name, redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris), public=public, auth_method=auth_method,
        subject_type=subject_type, sector_identifier_uri=sector_identifier_uri, trusted=trusted,
        grant_types=list(grant_types) or None, scope=scope, jwks=jwks, id_token_signed_response_alg=id_token_alg,
        backchannel_logout_uri=backchannel_logout_uri, frontchannel_logout_uri=frontchannel_logout_uri,
        initiate_login_uri=initiate_login_uri, login_chain=list(login_chain) or None, client_id=fixed_client_id,
        client_secret=fixed_client_secret, events_endpoint=events_endpoint,
    )
    data = client_metadata(registered.client)
    if registered.client_secret:
        data["client_secret"] = registered.client_secret
    if as_json:
        echo_json(data)
    else:
        click.echo(f"client_id:     {data['client_id']}")
        if registered.client_secret:
            click.echo(f"client_secret: {registered.client_secret}   (shown once; only its hash is stored)")


def _set_client_disabled(client_id: str, disabled: bool, as_json: bool) -> None:
    row = set_client_disabled(client_id, disabled, actor="operator:cli")
    if as_json:
        echo_json(client_metadata(row))
    else:
        click.echo(f"{client_id}: {'disabled' if disabled else 'enabled'}")


@clients_group.command("disable")
@click.argument("client_id")
@json_option
@with_appcontext
@reports_errors
def clients_disable(client_id, as_json) -> None:
    """Refuse the client everywhere: no authorization, no token, and its tokens stop working.
    Every hub process honours it within TESSERA_CACHE_CHECK_INTERVAL."""
    _set_client_disabled(client_id, True, as_json)


@clients_group.command("enable")
@click.argument("client_id")
@json_option
@with_appcontext
@reports_errors
def clients_enable(client_id, as_json) -> None:
    """Accept a disabled client again."""
    _set_client_disabled(client_id, False, as_json)
