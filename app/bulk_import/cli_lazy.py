"""``tessera tenants set-legacy-verify``: the tenant's legacy verification webhook (lazy migration,
app.bulk_import.lazy)."""

from __future__ import annotations

from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import with_appcontext

from app.bulk_import.lazy import POLICY_KEY
from app.cli_support import echo_json, json_option, reports_errors
from app.errors import InvalidInput
from app.tenants.service import set_policy


def check_verify_url(url: str) -> str:
    """An https URL (http only where private outbound is allowed: development and tests).
    The webhook receives passwords."""
    parts = urlsplit(url or "")
    allowed = ("https", "http") if current_app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise InvalidInput("the legacy verification webhook is an https URL (it receives passwords)")
    return url


@click.command("set-legacy-verify")
@click.option("--slug", required=True, help="Tenant slug.")
@click.option("--url", help="The legacy system's verification webhook (POST {login, password}).")
@click.option("--clear", is_flag=True, help="Remove the webhook: lazy migration off.")
@json_option
@with_appcontext
@reports_errors
def set_legacy_verify_command(slug, url, clear, as_json) -> None:
    """Set (or --clear) the tenant's legacy verification webhook for lazy migration."""
    if bool(url) == bool(clear):
        raise click.UsageError("give --url or --clear")
    tenant = set_policy(slug, **{POLICY_KEY: check_verify_url(url) if url else None})
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"legacy verification webhook of {slug}: {url or '(none)'}")
