"""`tessera merges …`: operators merge accounts of the same person, preview merges, follow them,
retry a failed one and cancel a pending one (``app.merging.operators``, actor ``operator:cli``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.accounts.operators import resolve_account
from app.cli_support import echo_json, json_option, reports_errors
from app.merging.models import STATUSES
from app.merging.operators import cancel_merge, get_merge, list_merges, merge_details, retry_merge
from app.merging.preview import preview_merge
from app.merging.requests import merge_to_dict
from app.merging.run import merge_accounts

ACTOR = "operator:cli"


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
@reports_errors
def merges_show(merge_id: int, as_json: bool) -> None:  # noqa: ARG001 (always JSON)
    """A merge with its report and the delivery state of its notifications (JSON)."""
    echo_json(merge_details(get_merge(merge_id)))


@merges_group.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--account", help="Only the merges of this account (id, phone or email), as survivor or absorbed.")
@json_option
@with_appcontext
@reports_errors
def merges_list(status, account, as_json) -> None:
    """The 200 newest merges: one line each, or JSON."""
    account_id = resolve_account(account).id if account else None
    rows = [merge_to_dict(r) for r in list_merges(status=status, account_id=account_id)]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"merge {r['id']}: {r['absorbed']} → {r['survivor']}  {r['status']} (step {r['step']})  "
                   f"{r['origin']}  {r['created_at']}")


def _echo_merge(record, as_json: bool, what: str) -> None:
    if as_json:
        echo_json(merge_to_dict(record))
    else:
        click.echo(f"merge {record.id}: {record.status} (step {record.step}){what}")


@merges_group.command("retry")
@click.argument("merge_id", type=int)
@json_option
@with_appcontext
@reports_errors
def merges_retry(merge_id, as_json) -> None:
    """Queue a failed merge again: the worker resumes it at the step it reached."""
    _echo_merge(retry_merge(merge_id, actor=ACTOR), as_json, ": the worker runs it on its next round")


@merges_group.command("cancel")
@click.argument("merge_id", type=int)
@click.option("--reason", required=True, help="Why (kept on the merge and in the audit log).")
@json_option
@with_appcontext
@reports_errors
def merges_cancel(merge_id, reason, as_json) -> None:
    """Cancel a pending merge that has not changed the accounts yet."""
    _echo_merge(cancel_merge(merge_id, actor=ACTOR, reason=reason), as_json, "")
