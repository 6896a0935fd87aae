"""`tessera users …`: accounts, created by an operator. Registered by ``app.accounts.wiring``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.accounts.profile import account_to_dict, create_account
from app.cli_support import echo_json, reports_errors


@click.group("users")
def users_group() -> None:
    """Accounts."""


@users_group.command("create")
@click.option("--phone", required=True, help="Phone number, E.164 (+8613800138000).")
@click.option("--password", required=True)
@click.option("--email")
@click.option("--name")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def users_create(phone, password, email, name, as_json) -> None:
    account = create_account(phone=phone, password=password, email=email, name=name)
    if as_json:
        echo_json(account_to_dict(account))
    else:
        click.echo(f"Created account {account.id}")
