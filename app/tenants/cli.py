"""`tessera tenants …`: the subsidiaries, their branding and policies. Registered by
``app.tenants.wiring``; features add subcommands to ``tenants_group`` (bulk_import:
``tenants set-legacy-verify``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, reports_errors
from app.tenants.service import create_tenant, set_policy


@click.group("tenants")
def tenants_group() -> None:
    """Tenants (subsidiaries)."""


@tenants_group.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--color", help="Brand colour of the tenant's pages (#rrggbb).")
@click.option("--logo-uri", help="Logo shown on the tenant's pages.")
@click.option("--login-chain", "login_chain", multiple=True,
              help="client_id of a partner logged in automatically after a login at any site of the tenant.")
@click.option("--trust-all-clients", is_flag=True, help="Every client of the tenant is first-party: no consent page.")
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def tenants_set_login_chain(slug, client_ids, as_json) -> None:
    """Set the partner clients logged in automatically after a login at any site of the tenant."""
    tenant = set_policy(slug, login_chain=list(client_ids))
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"login chain of {slug}: {' '.join(client_ids) or '(none)'}")
