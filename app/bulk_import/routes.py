"""The dual-write sync API (app.bulk_import.sync): a legacy system still in service pushes its
accounts' creates, updates and deletes. Bearer token of a client-credentials client of the
tenant with the ``sync:write`` scope; every refusal an RFC 9457 problem with a stable ``reason``.

    PUT    /api/sync/<tenant>/accounts/<legacy_id>   create or update (an import record + version);
                                                     202 pending_proof: an identifier is held by an
                                                     account the tenant did not create
    DELETE /api/sync/<tenant>/accounts/<legacy_id>   ?version=… or ?updated_at=… (optional)
    GET    /api/sync/<tenant>/accounts/<legacy_id>   what the hub holds

The contract is served at /api/sync/openapi.json (app/bulk_import/openapi.py).
"""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, current_app, g, jsonify, request

from app.bulk_import import sync, sync_conflicts
from app.bulk_import.openapi import openapi_document
from app.bulk_import.records import InvalidRecord, _timestamp
from app.errors import TesseraError
from app.extensions import csrf, db
from app.json_input import MalformedJSON, json_body
from app.partners.auth import client_token_required
from app.problems import problem

bp = Blueprint("sync", __name__, url_prefix="/api/sync")
csrf.exempt(bp)  # bearer-token API, no cookies

SYNC_SCOPE = "sync:write"

#: ``reason`` of the domain errors that carry none.
_ERROR_REASONS = {400: "invalid_record", 404: "unknown_legacy_id", 409: "conflict", 503: "account_busy"}


def _tenant_of_client(view):
    """The URL's tenant is the token's client's tenant (a client never writes another tenant)."""
    @wraps(view)
    def wrapper(tenant: str, **kwargs):
        if g.client.tenant.slug != tenant:
            return problem(403, "Wrong tenant", "this client may only sync accounts of its own tenant",
                           reason="wrong_tenant")
        return view(g.client.tenant, **kwargs)
    return wrapper


def _refused(exc: TesseraError):
    db.session.rollback()
    reason = getattr(exc, "reason", None) or _ERROR_REASONS.get(exc.status, "refused")
    headers = {"Retry-After": "5"} if exc.status == 503 else None
    return problem(exc.status, exc.title, exc.detail, headers=headers, reason=reason)


def _answer(result: sync.SyncResult, status: int = 200):
    if result.mapping is None:  # waiting for the person's proof: only what the legacy system sent
        body = {"result": result.result, **sync_conflicts.conflict_state(result.conflict)}
        if result.warnings:
            body["warnings"] = result.warnings
        return jsonify(body), status
    body = {"result": result.result, **sync.legacy_state(result.mapping, g.client)}
    if result.warnings:
        body["warnings"] = result.warnings
    db.session.commit()  # the client's subject, recorded on first sight
    return jsonify(body), status


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app.config["TESSERA_ISSUER"]))


@bp.put("/<tenant>/accounts/<legacy_id>")
@client_token_required(SYNC_SCOPE)
@_tenant_of_client
def put_account(tenant, legacy_id: str):
    try:
        body = json_body(require_content_type=True)
    except MalformedJSON as exc:
        return problem(400, "Invalid input", f"{exc.detail}: it is a JSON object (an import record)", reason="invalid_json")
    try:
        record, order = sync.parse_change(legacy_id, body)
        result = sync.apply_change(tenant, record, order, source="sync", actor=f"client:{g.client.client_id}",
                                   client_id=g.client.id)
    except TesseraError as exc:
        return _refused(exc)
    status = {"created": 201, "linked": 201, "pending_proof": 202}.get(result.result, 200)
    return _answer(result, status)


@bp.delete("/<tenant>/accounts/<legacy_id>")
@client_token_required(SYNC_SCOPE)
@_tenant_of_client
def delete_account(tenant, legacy_id: str):
    try:
        order = sync.ChangeOrder(version=sync.parse_version(request.args.get("version")),
                                 updated_at=_timestamp(dict(request.args), "updated_at"))
        if (sync.find_mapping(tenant.id, legacy_id) is None
                and sync_conflicts.find_conflict(tenant.id, legacy_id) is not None):
            row = sync_conflicts.withdraw_conflict(tenant, legacy_id, actor=f"client:{g.client.client_id}",
                                                   client_id=g.client.id)
            return _answer(sync.SyncResult(row.status, None, [], conflict=row))
        result = sync.delete_legacy_account(tenant, legacy_id, order, actor=f"client:{g.client.client_id}",
                                            client_id=g.client.id)
    except InvalidRecord as exc:
        return problem(400, "Invalid input", exc.detail, reason="invalid_record")
    except TesseraError as exc:
        return _refused(exc)
    return _answer(result)


@bp.get("/<tenant>/accounts/<legacy_id>")
@client_token_required(SYNC_SCOPE)
@_tenant_of_client
def get_account(tenant, legacy_id: str):
    mapping = sync.find_mapping(tenant.id, legacy_id)
    if mapping is None and (conflict := sync_conflicts.find_conflict(tenant.id, legacy_id)) is not None:
        return _answer(sync.SyncResult("pending_proof" if conflict.status == "pending" else conflict.status, None, [],
                                       conflict=conflict))
    if mapping is None:
        return problem(404, "Not found", "no such legacy account in this tenant", reason="unknown_legacy_id")
    return _answer(sync.SyncResult("current", mapping, []))
