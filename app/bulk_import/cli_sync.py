"""``tessera sync conflicts TENANT``: the legacy ids a tenant's live sync (or lazy migration) sent
that name an identifier held by an account the tenant did not create, waiting for the person's
proof (app.bulk_import.sync, docs/flows/sync-and-lazy-migration.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.bulk_import.models import SyncConflict
from app.bulk_import.sync_conflicts import list_conflicts
from app.cli_support import echo_json, fail, json_option
from app.extensions import db
from app.tenants.models import Tenant

STATUSES = ("pending", "linked", "deleted", "withdrawn", "all")


@click.group("sync")
def sync_group() -> None:
    """The dual-write sync API's state."""


def _row(conflict: SyncConflict) -> dict:
    """One conflict as operators see it (they may see the holder's account id; the tenant never does)."""
    return {"legacy_id": conflict.legacy_id, "kind": conflict.kind, "source": conflict.source,
            "identity_kind": conflict.identity_kind, "value": conflict.identity_value,
            "namespace": conflict.identity_namespace or None, "account_id": conflict.account_id,
            "status": conflict.status, "version": conflict.legacy_version, "created_at": conflict.created_at,
            "resolved_at": conflict.resolved_at}


@sync_group.command("conflicts")
@click.argument("tenant")
@click.option("--status", type=click.Choice(STATUSES), default="pending", show_default=True)
@json_option
@with_appcontext
def sync_conflicts(tenant, status, as_json) -> None:
    """List the tenant's legacy ids waiting for the person's proof (or, with --status, the others)."""
    row = db.session.scalar(db.select(Tenant).filter_by(slug=tenant))
    if row is None:
        fail(f"no tenant {tenant!r}")
    rows = [_row(c) for c in list_conflicts(row, None if status == "all" else status)]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no {'' if status == 'all' else status + ' '}sync conflicts in {tenant}")
    for r in rows:
        click.echo(f"{r['legacy_id']}\t{r['kind']}\t{r['identity_kind']} {r['value']}\taccount {r['account_id']}"
                   f"\t{r['status']}\t{r['source']}\t{r['created_at']:%Y-%m-%d %H:%M:%S}")
