"""`tessera users reset-mfa`: an operator removes a person's second factors (a lost phone, a
verified identity at the help desk). Registered by ``app.mfa.wiring`` on the ``users`` group."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, json_option, reports_errors
from app.mfa.operators import reset_second_factors


@click.command("reset-mfa")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def reset_mfa_command(account, as_json) -> None:
    """Remove every second factor of ACCOUNT (authenticator app, recovery codes, passkeys)."""
    removed = reset_second_factors(account, actor="operator:cli")
    if as_json:
        echo_json({"removed": removed})
    else:
        click.echo("removed: " + ", ".join(f"{name} {count}" for name, count in removed.items()))
