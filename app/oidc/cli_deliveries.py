"""`tessera deliveries …`: the outbox for operators (app.oidc.deliveries). Registered by the shell
(``app.factory.create_app``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, fail, json_option, reports_errors
from app.events.outbox import DELIVERY_FILTERS
from app.oidc.deliveries import list_deliveries, retry


@click.group("deliveries")
def deliveries_group() -> None:
    """Outbox deliveries to clients (logout tokens, security events)."""


def _line(d: dict) -> str:
    status = "failing" if d["failing"] else d["status"]
    error = f"  {d['last_error']}" if d["last_error"] and d["status"] != "delivered" else ""
    return (f"{d['id']:>6}  {d['kind']:18} {d['client'] or '-':24} {status:9} attempts {d['attempts']:<3} "
            f"{d['created_at']:%Y-%m-%d %H:%M}{error}")


@deliveries_group.command("list")
@click.option("--client", "client_id", help="Only this client's (its client_id).")
@click.option("--status", type=click.Choice(DELIVERY_FILTERS))
@json_option
@with_appcontext
@reports_errors
def deliveries_list(client_id, status, as_json) -> None:
    """The 200 newest outbox events."""
    rows = list_deliveries(client_id, status)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(_line(row))


@deliveries_group.command("retry")
@click.argument("event_id", type=int, required=False)
@click.option("--client", "client_id", help="Every pending event of this client (its client_id).")
@json_option
@with_appcontext
@reports_errors
def deliveries_retry(event_id, client_id, as_json) -> None:
    """Make a pending event (or a client's pending events) due now."""
    if (event_id is None) == (client_id is None):
        fail("give EVENT_ID or --client, not both")
    rows = retry(event_id, client_id)
    if as_json:
        echo_json(rows)
    else:
        click.echo(f"{len(rows)} event(s) due now: the worker sends them on its next round")
