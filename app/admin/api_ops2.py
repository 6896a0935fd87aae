"""Admin API: the operator actions on merges, keys, upstreams and imports that the first resource
modules do not cover — retrying and cancelling merges, retiring a key, configuring upstream
identity providers, following import jobs and downloading their conflict reports — over the
services the CLI uses (``app.merging.operators``, ``app.oidc.keys``, ``app.federation.providers``,
``app.bulk_import.jobs``). Keys and upstreams are the super admin's; a tenant admin follows its own
tenant's imports."""

from __future__ import annotations

from flask import Response, request, stream_with_context

from app import audit
from app.admin.blueprint import (
    answer, arg_choice, arg_int, body, bp, check_if_match, field, only_fields, page, path_id, principal, refuse, unknown,
)
from app.admin.principals import admin_required
from app.admin.reach import import_job_in_reach, imports_query
from app.bulk_import.jobs import STATUSES as IMPORT_STATUSES, conflict_report_lines, job_details
from app.bulk_import.models import ImportJob
from app.extensions import db
from app.federation.models import UpstreamProvider
from app.federation.providers import create_provider, provider_to_dict, set_provider_enabled, update_provider
from app.merging.models import MergeRecord
from app.merging.operators import cancel_merge, retry_merge
from app.merging.requests import merge_to_dict
from app.oidc.keys import key_to_dict, retire_key
from app.oidc.models import SigningKey
from app.tenants.models import Tenant



# --- merges --------------------------------------------------------------------------------------

def _merge_id(merge_id: str) -> int:
    pk = path_id(merge_id, "merge")
    if db.session.get(MergeRecord, pk) is None:
        raise unknown(f"merge {merge_id}")
    return pk


@bp.post("/merges/<merge_id>/retry")
@admin_required
def merges_retry(merge_id: str):
    """Put a failed merge back in the queue: the worker resumes it from the step it reached."""
    principal().require("merges", "manage")
    return answer(merge_to_dict(retry_merge(_merge_id(merge_id), actor=principal().actor)))


@bp.post("/merges/<merge_id>/cancel")
@admin_required
def merges_cancel(merge_id: str):
    """Cancel a pending merge that has not started folding the accounts."""
    principal().require("merges", "manage")
    data = body()
    only_fields(data, ("reason",))
    reason = field(data, "reason", str, required=True)
    return answer(merge_to_dict(cancel_merge(_merge_id(merge_id), actor=principal().actor, reason=reason)))


# --- keys ----------------------------------------------------------------------------------------

@bp.post("/keys/<kid>/retire")
@admin_required
def keys_retire(kid: str):
    """Take a key out of the JWKS once nothing it signed can still be valid (``now``: at once)."""
    principal().require("keys", "manage")
    data = body() if request.get_data(cache=True) else {}
    only_fields(data, ("now",))
    if db.session.scalar(db.select(SigningKey.id).filter_by(kid=kid[:64])) is None:
        raise unknown(f"key {kid!r}")
    return answer(key_to_dict(retire_key(kid, actor=principal().actor, now=bool(field(data, "now", bool)))))


# --- upstream identity providers ------------------------------------------------------------------

_UPSTREAM_FIELDS = ("name", "client_id", "client_secret", "discovery_url", "authorization_endpoint", "token_endpoint",
                    "userinfo_endpoint", "scope", "claim_mapping", "platform", "matching_mode")


def _upstream(slug: str) -> UpstreamProvider:
    provider = db.session.scalar(db.select(UpstreamProvider).filter_by(slug=slug[:64]))
    if provider is None:
        raise unknown(f"upstream {slug!r}")
    return provider


def _upstream_fields(data: dict) -> dict:
    values = {}
    for name in _UPSTREAM_FIELDS:
        if name == "claim_mapping":
            mapping = field(data, name, dict)
            if mapping is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
                raise refuse(400, "invalid_request", "claim_mapping maps upstream claim names to the hub's claim names (strings)")
            values[name] = mapping
        else:
            values[name] = field(data, name, str)
    return values


@bp.post("/upstreams")
@admin_required
def upstreams_create():
    principal().require("upstreams", "manage")
    data = body()
    only_fields(data, ("slug", *_UPSTREAM_FIELDS))
    values = _upstream_fields(data)
    values["matching_mode"] = values["matching_mode"] or "never"
    if values["name"] is None or values["client_id"] is None:
        raise refuse(400, "invalid_request", "name and client_id are required")
    provider = create_provider(slug=field(data, "slug", str, required=True), **values)
    audit.record("upstream.created", actor=principal().actor, upstream=provider.slug)
    db.session.commit()
    return answer(provider_to_dict(provider), 201, etag=True)


@bp.get("/upstreams/<slug>")
@admin_required
def upstreams_show(slug: str):
    principal().require("upstreams", "read")
    return answer(provider_to_dict(_upstream(slug)), etag=True)


@bp.patch("/upstreams/<slug>")
@admin_required
def upstreams_update(slug: str):
    principal().require("upstreams", "manage")
    data = body()
    only_fields(data, _UPSTREAM_FIELDS)
    values = _upstream_fields(data)
    check_if_match(provider_to_dict(_upstream(slug)))
    provider = update_provider(slug, actor=principal().actor, **values)
    return answer(provider_to_dict(provider), etag=True)


def _set_upstream_enabled(slug: str, enabled: bool):
    principal().require("upstreams", "manage")
    _upstream(slug)
    provider, _ = set_provider_enabled(slug, enabled, actor=principal().actor)
    return answer(provider_to_dict(provider), etag=True)


@bp.post("/upstreams/<slug>/disable")
@admin_required
def upstreams_disable(slug: str):
    return _set_upstream_enabled(slug, False)


@bp.post("/upstreams/<slug>/enable")
@admin_required
def upstreams_enable(slug: str):
    return _set_upstream_enabled(slug, True)


# --- imports -------------------------------------------------------------------------------------

def _job_in_reach(job_id: str) -> int:
    return import_job_in_reach(principal(), path_id(job_id, "import job")).id


def _job_to_dict(job: ImportJob) -> dict:
    data = job_details(job.id, conflicts=0)
    data.pop("conflicts", None)
    return data


@bp.get("/imports")
@admin_required
def imports_list():
    """Import jobs (plans and runs), newest first, with their progress."""
    principal().require("imports", "read")
    query = imports_query(principal())
    tenant = request.args.get("tenant")
    if tenant is not None:
        tenant_id = db.session.scalar(db.select(Tenant.id).filter_by(slug=tenant[:64]))
        query = query.where(ImportJob.tenant_id == (tenant_id or -1))
    status = arg_choice("status", IMPORT_STATUSES)
    if status is not None:
        query = query.where(ImportJob.status == status)
    return page(query, ImportJob.id, _job_to_dict, newest_first=True)


@bp.get("/imports/<job_id>")
@admin_required
def imports_show(job_id: str):
    """One job: progress, counters, conflicts by kind and policy, the first ``conflicts`` (0–1000)."""
    principal().require("imports", "read")
    pk = _job_in_reach(job_id)
    return answer(job_details(pk, conflicts=arg_int("conflicts", 20, low=0, high=1000)))


@bp.get("/imports/<job_id>/conflicts")
@admin_required
def imports_conflicts(job_id: str):
    """The job's whole conflict report, in file order, as JSON Lines."""
    principal().require("imports", "read")
    pk = _job_in_reach(job_id)
    return Response(stream_with_context(conflict_report_lines(pk)), mimetype="application/jsonl", headers={
        "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="import-{pk}-conflicts.jsonl"'})


