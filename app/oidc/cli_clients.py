"""`tessera clients list`, `show`, `update`, `rotate-secret` and `delete`: operators manage
registered clients through the services of ``app.oidc.client_admin`` (actor ``operator:cli``).
Added to ``clients_group`` by ``app.oidc.wiring`` (``COMMANDS``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, json_option, reports_errors
from app.oidc.client_admin import (
    client_details, delete_client, list_clients, rotate_client_secret, update_client,
)
from app.oidc.clients import load_client_row

ACTOR = "operator:cli"


def _echo_details(data: dict) -> None:
    for key in sorted(data):
        value = data[key]
        if isinstance(value, (list, tuple)):
            value = " ".join(value) or "(none)"
        click.echo(f"{key}: {'' if value is None else value}")


@click.command("list")
@click.option("--tenant", help="Only the clients of this tenant (slug).")
@click.option("--search", help="Only clients whose client_id or name contains this text (any case).")
@json_option
@with_appcontext
@reports_errors
def clients_list(tenant, search, as_json) -> None:
    """List clients: tenant, client_id, auth method, (disabled), name."""
    rows = list_clients(tenant=tenant, search=search)
    if as_json:
        echo_json([client_details(row) for row in rows])
        return
    for row in rows:
        disabled = " (disabled)" if row.disabled else ""
        click.echo(f"{row.tenant.slug}  {row.client_id}  {row.token_endpoint_auth_method}{disabled}  {row.name}")


@click.command("show")
@click.argument("client_id")
@json_option
@with_appcontext
@reports_errors
def clients_show(client_id, as_json) -> None:
    """Show a client's registration (never its secret)."""
    data = client_details(load_client_row(client_id))
    if as_json:
        echo_json(data)
    else:
        _echo_details(data)


@click.command("update")
@click.argument("client_id")
@click.option("--name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeatable; replaces the list.")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
              help="Repeatable; replaces the list.")
@click.option("--no-post-logout-redirect-uris", is_flag=True, help="Empty the post-logout redirect URIs.")
@click.option("--backchannel-logout-uri", help='"" removes it.')
@click.option("--frontchannel-logout-uri", help='"" removes it.')
@click.option("--events-endpoint", help='"" removes it.')
@click.option("--trusted/--not-trusted", default=None, help="First-party client: consent is implied.")
@click.option("--scope", help="Space-separated scopes the client may ask for (replaces them).")
@click.option("--default-acr-value", "default_acr_values", multiple=True,
              help="Repeatable; replaces them. The lowest is the assurance level every login to the client needs.")
@click.option("--no-default-acr-values", is_flag=True, help="No assurance level required of logins.")
@json_option
@with_appcontext
@reports_errors
def clients_update(client_id, name, redirect_uris, post_logout_redirect_uris, no_post_logout_redirect_uris,
                   backchannel_logout_uri, frontchannel_logout_uri, events_endpoint, trusted, scope,
                   default_acr_values, no_default_acr_values, as_json) -> None:
    """Change the given fields of a client, checked like a registration; others stay."""
    if no_post_logout_redirect_uris and post_logout_redirect_uris:
        raise click.UsageError("--no-post-logout-redirect-uris and --post-logout-redirect-uri exclude each other")
    post_logout = [] if no_post_logout_redirect_uris else (list(post_logout_redirect_uris) or None)
    if no_default_acr_values and default_acr_values:
        raise click.UsageError("--no-default-acr-values and --default-acr-value exclude each other")
    acr_values = [] if no_default_acr_values else (list(default_acr_values) or None)
    row = update_client(
        client_id, actor=ACTOR, name=name, redirect_uris=list(redirect_uris) or None,
        post_logout_redirect_uris=post_logout, backchannel_logout_uri=backchannel_logout_uri,
        frontchannel_logout_uri=frontchannel_logout_uri, events_endpoint=events_endpoint, trusted=trusted,
        scope=scope, default_acr_values=acr_values,
    )
    if as_json:
        echo_json(client_details(row))
    else:
        click.echo(f"{client_id}: updated")


@click.command("rotate-secret")
@click.argument("client_id")
@click.option("--grace", type=click.IntRange(min=0), default=None,
              help="Seconds the current secret stays valid (default TESSERA_CLIENT_SECRET_GRACE_SECONDS; 0: none).")
@click.option("--client-secret", "fixed_client_secret",
              help="Use this new secret instead of a generated one: at least 32 random characters and about 128 bits.")
@json_option
@with_appcontext
@reports_errors
def clients_rotate_secret(client_id, grace, fixed_client_secret, as_json) -> None:
    """Give a client a new secret, printed once; the old one stays valid for the grace period."""
    rotated = rotate_client_secret(client_id, actor=ACTOR, grace_seconds=grace, client_secret=fixed_client_secret)
    if as_json:
        echo_json({"client_id": client_id, "client_secret": rotated.client_secret,
                   "previous_secret_expires_at": rotated.previous_valid_until})
        return
    click.echo(f"client_secret: {rotated.client_secret}   (shown once; only its hash is stored)")
    if rotated.previous_valid_until:
        click.echo(f"the old secret stays valid until {rotated.previous_valid_until:%Y-%m-%d %H:%M:%S} UTC")
    else:
        click.echo("the old secret no longer works")


@click.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Delete even if the client holds live tokens (they stop working).")
@json_option
@with_appcontext
@reports_errors
def clients_delete(client_id, yes, as_json) -> None:
    """Delete a client, its tokens, consents and codes; its users' subjects are kept."""
    deleted = delete_client(client_id, actor=ACTOR, force=yes)
    if as_json:
        echo_json({"client_id": client_id, "deleted": deleted})
        return
    counts = ", ".join(f"{n} {table}" for table, n in sorted(deleted.items()) if n) or "nothing else"
    click.echo(f"{client_id}: deleted ({counts})")


COMMANDS = (clients_list, clients_show, clients_update, clients_rotate_secret, clients_delete)
