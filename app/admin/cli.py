"""`tessera admins …`: who may use the admin API and console (roles of people; audited as
``operator:cli``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.accounts.operators import resolve_account
from app.admin.console import ensure_console_client
from app.admin.models import ROLES
from app.admin.roles import grant_role, list_roles, revoke_role, role_to_dict
from app.cli_support import echo_json, json_option, reports_errors

OPERATOR = "operator:cli"


@click.group("admins")
def admins_group() -> None:
    """People who administer the hub (admin API and console)."""


@admins_group.command("grant")
@click.argument("account")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--tenant", help="The tenant of a tenant_admin (its slug).")
@json_option
@with_appcontext
@reports_errors
def admins_grant(account, role, tenant, as_json) -> None:
    """Give ACCOUNT (an id, phone or email) an admin role, replacing the one it had."""
    row = grant_role(resolve_account(account).id, role, tenant=tenant, actor=OPERATOR)
    if as_json:
        echo_json(role_to_dict(row))
    else:
        click.echo(f"account {row.account_id}: {role}" + (f" of {tenant}" if tenant else ""))


@admins_group.command("revoke")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def admins_revoke(account, as_json) -> None:
    """Take ACCOUNT's admin role away."""
    account_id = resolve_account(account).id
    revoke_role(account_id, actor=OPERATOR)
    if as_json:
        echo_json({"account_id": account_id, "role": None})
    else:
        click.echo(f"account {account_id}: no admin role")


@admins_group.command("list")
@json_option
@with_appcontext
@reports_errors
def admins_list(as_json) -> None:
    """Everyone holding an admin role."""
    rows = [role_to_dict(r) for r in list_roles()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['account_id']}  {r['role']}" + (f" of {r['tenant']}" if r["tenant"] else ""))


@admins_group.command("console-client")
@click.option("--tenant", required=True, help="The tenant the console's client belongs to (its slug).")
@json_option
@with_appcontext
@reports_errors
def admins_console_client(tenant, as_json) -> None:
    """Register the admin console's client (TESSERA_ADMIN_CONSOLE_CLIENT: public, trusted, scope
    "openid admin", redirect URI TESSERA_ISSUER/admin/callback) if it is missing. Idempotent."""
    client_id, changed = ensure_console_client(tenant, actor=OPERATOR)
    if as_json:
        echo_json({"client_id": client_id, "changed": changed})
    else:
        click.echo(f"admin console client {client_id}: " + ("registered" if changed else "already registered"))
