"""`tessera merges …`: operators merge accounts of the same person, preview merges and follow them."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.accounts.operators import resolve_account
from app.cli_support import echo_json, fail, json_option, reports_errors
from app.events.models import OutboxEvent
from app.extensions import db
from app.merging.models import MergeRecord
from app.merging.preview import preview_merge
from app.merging.requests import merge_to_dict
from app.merging.run import merge_accounts


@click.group("merges")
def merges_group() -> None:
    """Account merges."""


@merges_group.command("create")
@click.option("--survivor", required=True, help="Account id, phone or email of the account that stays.")
@click.option("--absorbed", required=True, help="Account id, phone or email of the account folded into it.")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--regrant-consents", is_flag=True, help="The user approved: the survivor gets the absorbed account's consents.")
@click.option("--dry-run", is_flag=True, help="Only show what the merge would do.")
@json_option
@with_appcontext
@reports_errors
def merges_create(survivor, absorbed, reason, regrant_consents, dry_run, as_json) -> None:
    """Merge one account into another (idempotent: repeating it returns the same merge)."""
    survivor_id, absorbed_id = resolve_account(survivor).id, resolve_account(absorbed).id
    if dry_run:
        echo_json(preview_merge(survivor_id, absorbed_id))
        return
    record = merge_accounts(survivor_id, absorbed_id, origin="operator", reason=reason,
                            regrant_consents=regrant_consents, actor="operator")
    if as_json:
        echo_json(merge_to_dict(record))
    else:
        click.echo(f"merge {record.id}: {record.status} (step {record.step})")


@merges_group.command("show")
@click.argument("merge_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Accepted for scripts: the output is JSON anyway.")
@with_appcontext
def merges_show(merge_id: int, as_json: bool) -> None:  # noqa: ARG001 (always JSON)
    """A merge with its report and the delivery state of its notifications (JSON)."""
    record = db.session.get(MergeRecord, merge_id)
    if record is None:
        fail(f"no merge {merge_id}")
    data = merge_to_dict(record)
    events = db.session.scalars(db.select(OutboxEvent).filter_by(reference=f"merge-{merge_id}").order_by(OutboxEvent.id))
    data["deliveries"] = [
        {"jti": e.jti, "url": e.url, "status": e.status, "attempts": e.attempts, "last_error": e.last_error,
         "delivered_at": e.delivered_at}
        for e in events
    ]
    echo_json(data)


@merges_group.command("list")
@click.option("--status", type=click.Choice(["pending", "running", "completed", "failed"]))
@json_option
@with_appcontext
def merges_list(status, as_json) -> None:
    """The 200 newest merges: one line each, or JSON."""
    query = db.select(MergeRecord).order_by(MergeRecord.id.desc()).limit(200)
    if status:
        query = query.filter_by(status=status)
    rows = [merge_to_dict(r) for r in db.session.scalars(query)]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"merge {r['id']}: {r['absorbed']} → {r['survivor']}  {r['status']} (step {r['step']})  "
                   f"{r['origin']}  {r['created_at']}")
