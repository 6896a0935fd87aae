"""Admin API: what runs behind the people — merges, deliveries (the outbox per client), signing
keys and upstream identity providers (``/merges``, ``/deliveries``, ``/keys``, ``/upstreams``) —
over the services the CLI uses. Keys and upstreams are hub-wide: a tenant admin sees neither;
its deliveries are its clients' only, its merges those of people related to its tenant."""

from __future__ import annotations

from flask import request

from app.accounts.models import Account
from app.admin.blueprint import (
    MAX_ID, answer, arg_choice, arg_int, body, bp, field, only_fields, page, path_id, principal, refuse, unknown,
)
from app.admin.principals import admin_required
from app.admin.reach import deliveries_query, delivery_in_reach, merge_in_reach, merges_query
from app.events.models import OutboxEvent
from app.extensions import db
from app.federation.models import UpstreamProvider
from app.federation.providers import provider_to_dict
from app.merging.models import MergeRecord
from app.merging.preview import preview_merge
from app.merging.requests import merge_to_dict
from app.merging.run import merge_accounts
from app.oidc import deliveries
from app.oidc.keys import ensure_keys, key_to_dict, rotate_keys
from app.oidc.models import Client, SigningKey

MERGE_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
DELIVERY_STATUSES = ("pending", "failing", "delivered", "expired", "rejected")


# --- merges --------------------------------------------------------------------------------------

@bp.get("/merges")
@admin_required
def merges_list():
    principal().require("merges", "read")
    query = merges_query(principal())
    status = arg_choice("status", MERGE_STATUSES)
    if status is not None:
        query = query.where(MergeRecord.status == status)
    account = arg_int("user", None, low=1)
    if account is not None:
        query = query.where(db.or_(MergeRecord.survivor_id == account, MergeRecord.absorbed_id == account))
    return page(query, MergeRecord.id, merge_to_dict, newest_first=True)


@bp.get("/merges/<merge_id>")
@admin_required
def merges_show(merge_id: str):
    principal().require("merges", "read")
    return answer(merge_to_dict(merge_in_reach(principal(), path_id(merge_id, "merge"))))


@bp.post("/merges")
@admin_required
def merges_create():
    """An operator's merge of two accounts of one person."""
    survivor, absorbed, data = _merge_parties(("reason", "regrant_consents"))
    reason = field(data, "reason", str, required=True)
    if not reason.strip():
        raise refuse(400, "invalid_request", "a reason is required")
    record = merge_accounts(survivor, absorbed, origin="operator", reason=reason.strip(),
                            regrant_consents=bool(field(data, "regrant_consents", bool)), actor=principal().actor)
    return answer(merge_to_dict(record), 201)


@bp.post("/merges/preview")
@admin_required
def merges_preview():
    """What merging ``absorbed`` into ``survivor`` would do, without doing it."""
    survivor, absorbed, _ = _merge_parties(())
    return answer(preview_merge(survivor, absorbed))


def _merge_parties(extra: tuple[str, ...]) -> tuple[int, int, dict]:
    principal().require("merges", "manage")
    data = body()
    only_fields(data, ("survivor", "absorbed", *extra))
    survivor, absorbed = field(data, "survivor", int, required=True), field(data, "absorbed", int, required=True)
    for account_id in (survivor, absorbed):
        if not 1 <= account_id <= MAX_ID or db.session.get(Account, account_id) is None:
            raise unknown(f"user {account_id}")
    return survivor, absorbed, data


# --- deliveries ----------------------------------------------------------------------------------

@bp.get("/deliveries")
@admin_required
def deliveries_list():
    principal().require("deliveries", "read")
    query = deliveries_query(principal())
    client_id = request.args.get("client")
    if client_id is not None:
        pk = db.session.scalar(db.select(Client.id).filter_by(client_id=client_id[:200]))
        query = query.where(OutboxEvent.client_id == (pk or -1))
    status = arg_choice("status", DELIVERY_STATUSES)
    if status is not None:
        if status == "failing":
            query = query.where(OutboxEvent.status == "pending", OutboxEvent.attempts > 0)
        else:
            query = query.where(OutboxEvent.status == status)
    return page(query, OutboxEvent.id, deliveries.delivery_to_dict, newest_first=True)


@bp.post("/deliveries/<event_id>/retry")
@admin_required
def deliveries_retry(event_id: str):
    principal().require("deliveries", "retry")
    pk = delivery_in_reach(principal(), path_id(event_id, "delivery")).id
    return answer(deliveries.retry(event_id=pk, actor=principal().actor)[0])


# --- keys ----------------------------------------------------------------------------------------

@bp.get("/keys")
@admin_required
def keys_list():
    principal().require("keys", "read")
    ensure_keys()
    return page(db.select(SigningKey), SigningKey.id, key_to_dict)


@bp.post("/keys/rotate")
@admin_required
def keys_rotate():
    principal().require("keys", "manage")
    rows = rotate_keys(actor=principal().actor)
    return answer({"items": [key_to_dict(r) for r in rows], "next_cursor": None})


# --- upstream identity providers ------------------------------------------------------------------

@bp.get("/upstreams")
@admin_required
def upstreams_list():
    principal().require("upstreams", "read")
    return page(db.select(UpstreamProvider), UpstreamProvider.id, provider_to_dict)
