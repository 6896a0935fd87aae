"""`tessera tenants …`: the subsidiaries, their branding and policies (writes audited, actor
``operator:cli``). Registered by
``app.tenants.wiring``; features add subcommands to ``tenants_group`` (bulk_import:
``tenants set-legacy-verify``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, json_option, reports_errors
from app.tenants.service import (
    client_count, create_tenant, delete_tenant, get_tenant, list_tenants, set_policy, update_tenant,
)


@click.group("tenants")
def tenants_group() -> None:
    """Tenants (subsidiaries)."""


@tenants_group.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--color", help="Brand colour of the tenant's pages (#rgb or #rrggbb).")
@click.option("--logo-uri", help="Logo shown on the tenant's pages (https).")
@click.option("--login-chain", "login_chain", multiple=True,
              help="client_id of a partner logged in automatically after a login at any site of the tenant.")
@click.option("--trust-all-clients", is_flag=True, help="Every client of the tenant is first-party: no consent page.")
@json_option
@with_appcontext
@reports_errors
def tenants_create(slug, name, color, logo_uri, login_chain, trust_all_clients, as_json) -> None:
    branding = {k: v for k, v in {"primary_color": color, "logo_uri": logo_uri}.items() if v}
    policy = {"login_chain": list(login_chain), "trust_all_clients": trust_all_clients}
    tenant = create_tenant(slug, name, branding=branding, policy=policy)
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"Created tenant {tenant.slug}")


@tenants_group.command("set-login-chain")
@click.option("--slug", required=True)
@click.argument("client_ids", nargs=-1)
@json_option
@with_appcontext
@reports_errors
def tenants_set_login_chain(slug, client_ids, as_json) -> None:
    """Set the partner clients logged in automatically after a login at any site of the tenant."""
    tenant = set_policy(slug, login_chain=list(client_ids))
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"login chain of {slug}: {' '.join(client_ids) or '(none)'}")


def _tenant_details(tenant) -> dict:
    return {**tenant.to_dict(), "created_at": tenant.created_at, "clients": client_count(tenant)}


@tenants_group.command("list")
@json_option
@with_appcontext
@reports_errors
def tenants_list(as_json) -> None:
    """List tenants: slug, number of clients, name."""
    rows = [_tenant_details(t) for t in list_tenants()]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['slug']}  {row['clients']} clients  {row['name']}")


@tenants_group.command("show")
@click.argument("slug")
@json_option
@with_appcontext
@reports_errors
def tenants_show(slug, as_json) -> None:
    """Show a tenant: name, branding, policy, number of clients."""
    data = _tenant_details(get_tenant(slug))
    if as_json:
        echo_json(data)
        return
    for key in ("slug", "name", "created_at", "clients"):
        click.echo(f"{key}: {data[key]}")
    for group in ("branding", "policy"):
        for key, value in sorted(data[group].items()):
            click.echo(f"{group}.{key}: {' '.join(value) if isinstance(value, list) else value}")


@tenants_group.command("update")
@click.argument("slug")
@click.option("--name")
@click.option("--color", help="Brand colour of the tenant's pages (#rgb or #rrggbb; an empty value removes it).")
@click.option("--logo-uri", help="Logo shown on the tenant's pages (https; an empty value removes it).")
@click.option("--trust-all-clients/--no-trust-all-clients", default=None,
              help="Every client of the tenant is first-party: no consent page.")
@click.option("--login-chain", "login_chain", multiple=True, help="Repeatable; replaces the tenant's login chain.")
@click.option("--no-login-chain", is_flag=True, help="Empty the tenant's login chain.")
@click.option("--require-mfa/--no-require-mfa", default=None,
              help="Every login to a client of the tenant needs two factors (urn:tessera:loa:2).")
@json_option
@with_appcontext
@reports_errors
def tenants_update(slug, name, color, logo_uri, trust_all_clients, login_chain, no_login_chain, require_mfa,
                   as_json) -> None:
    """Change the given fields of a tenant; the others stay."""
    if no_login_chain and login_chain:
        raise click.UsageError("--no-login-chain and --login-chain exclude each other")
    chain = [] if no_login_chain else (list(login_chain) or None)
    tenant = update_tenant(slug, actor="operator:cli", name=name, color=color, logo_uri=logo_uri,
                           trust_all_clients=trust_all_clients, login_chain=chain, require_mfa=require_mfa)
    if as_json:
        echo_json(_tenant_details(tenant))
    else:
        click.echo(f"{slug}: updated")


@tenants_group.command("delete")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@with_appcontext
@reports_errors
def tenants_delete(slug, yes, as_json) -> None:
    """Delete a tenant nothing refers to (no clients, usernames, legacy data, imports)."""
    if not yes and not click.confirm(f"Delete tenant {slug}?", err=True):
        raise click.Abort()
    tenant = delete_tenant(slug, actor="operator:cli")
    if as_json:
        echo_json({"deleted": tenant})
    else:
        click.echo(f"{slug}: deleted")
