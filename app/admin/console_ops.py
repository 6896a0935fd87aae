"""The admin console's pages for what runs behind the people: merges (retry a failed one, cancel a
pending one), import jobs (their progress, conflicts and conflict report) and upstream identity
providers (disable, enable). Each page asks ``Principal.require`` and ``app.admin.reach`` exactly
as the admin API does (``api_ops``, ``api_ops2``), and each write calls the same service with
``actor = principal.actor``: ``app.merging.operators``, ``app.bulk_import.jobs``,
``app.federation.providers``. A service's refusal (a merge that is not failed, …) comes back as a
message on the page it was asked from, never as a 500.
"""

from __future__ import annotations

from flask import Response, redirect, render_template, request, stream_with_context, url_for

from app.admin.console import (
    PAGE_SIZE, bp, choice_arg, console_login_required, done_or_refused, id_arg, principal, text_arg,
)
from app.admin.reach import import_job_in_reach, imports_query, merge_in_reach, merges_query, page_of, unknown
from app.bulk_import.jobs import STATUSES as IMPORT_STATUSES, conflict_report_lines, job_details, job_progress
from app.bulk_import.models import ImportJob
from app.extensions import db
from app.federation.models import UpstreamProvider
from app.federation.providers import list_providers, provider_to_dict, set_provider_enabled
from app.merging.models import STATUSES as MERGE_STATUSES, MergeRecord
from app.merging.operators import CANCELLABLE_STEPS, cancel_merge, retry_merge
from app.merging.requests import merge_to_dict

#: The conflicts a job's page lists (the rest: the conflict report).
CONFLICTS_SHOWN = 50


def _next_url(endpoint: str, cursor: str | None, **filters) -> str | None:
    return url_for(endpoint, cursor=cursor, **{k: v for k, v in filters.items() if v}) if cursor else None


# --- merges --------------------------------------------------------------------------------------

@bp.get("/merges")
@console_login_required
def merges():
    """Merges the principal reaches, newest first, of one status and/or one person."""
    principal().require("merges", "read")
    status, person = choice_arg("status", MERGE_STATUSES), id_arg("person")
    query = merges_query(principal())
    if status:
        query = query.where(MergeRecord.status == status)
    if person:
        query = query.where(db.or_(MergeRecord.survivor_id == person, MergeRecord.absorbed_id == person))
    result = page_of(query, MergeRecord.id, limit=PAGE_SIZE, cursor=text_arg("cursor"), newest_first=True)
    return render_template("admin/merges.html", merges=[merge_to_dict(m) for m in result.rows], statuses=MERGE_STATUSES,
                           status=status, person=person,
                           next_url=_next_url(".merges", result.next_cursor, status=status, person=person))


@bp.get("/merges/<int:merge_id>")
@console_login_required
def merge(merge_id: int):
    principal().require("merges", "read")
    record = merge_in_reach(principal(), merge_id)
    return render_template("admin/merge.html", merge=merge_to_dict(record),
                           cancellable=record.status == "pending" and record.step in CANCELLABLE_STEPS)


def _merge_action(merge_id: int) -> int:
    principal().require("merges", "manage")
    return merge_in_reach(principal(), merge_id).id


@bp.post("/merges/<int:merge_id>/retry")
@console_login_required
def merge_retry(merge_id: int):
    """Queue a failed merge again: the worker resumes it from the step it reached."""
    pk = _merge_action(merge_id)
    done_or_refused(lambda: retry_merge(pk, actor=principal().actor),
                    f"Merge {pk} is queued again: the worker resumes it on its next round.")
    return redirect(url_for(".merge", merge_id=pk), 303)


@bp.post("/merges/<int:merge_id>/cancel")
@console_login_required
def merge_cancel(merge_id: int):
    """Cancel a pending merge that changed nothing yet (a reason is required)."""
    pk = _merge_action(merge_id)
    reason = (request.form.get("reason") or "").strip()[:500]
    done_or_refused(lambda: cancel_merge(pk, actor=principal().actor, reason=reason), f"Merge {pk} cancelled.")
    return redirect(url_for(".merge", merge_id=pk), 303)


# --- imports -------------------------------------------------------------------------------------

def _job(job: ImportJob, conflicts: int = 0) -> dict:
    return {**job_details(job.id, conflicts=conflicts), "progress": job_progress(job)}


@bp.get("/imports")
@console_login_required
def imports():
    """Import jobs (plans and runs) the principal reaches, newest first, with their progress."""
    principal().require("imports", "read")
    status = choice_arg("status", IMPORT_STATUSES)
    query = imports_query(principal())
    if status:
        query = query.where(ImportJob.status == status)
    result = page_of(query, ImportJob.id, limit=PAGE_SIZE, cursor=text_arg("cursor"), newest_first=True)
    return render_template("admin/imports.html", jobs=[_job(j) for j in result.rows], statuses=IMPORT_STATUSES,
                           status=status, next_url=_next_url(".imports", result.next_cursor, status=status))


@bp.get("/imports/<int:job_id>")
@console_login_required
def import_job(job_id: int):
    """One job: progress, counters, conflicts by kind and policy, the first conflicts."""
    principal().require("imports", "read")
    job = import_job_in_reach(principal(), job_id)
    return render_template("admin/import_job.html", job=_job(job, CONFLICTS_SHOWN), shown=CONFLICTS_SHOWN)


@bp.get("/imports/<int:job_id>/conflicts")
@console_login_required
def import_conflicts(job_id: int):
    """The job's whole conflict report as JSON Lines (the admin API's, with the console's login)."""
    principal().require("imports", "read")
    pk = import_job_in_reach(principal(), job_id).id
    return Response(stream_with_context(conflict_report_lines(pk)), mimetype="application/jsonl", headers={
        "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="import-{pk}-conflicts.jsonl"'})


# --- upstream identity providers ------------------------------------------------------------------

@bp.get("/upstreams")
@console_login_required
def upstreams():
    principal().require("upstreams", "read")
    return render_template("admin/upstreams.html", upstreams=[provider_to_dict(p) for p in list_providers()])


def _set_upstream_enabled(slug: str, enabled: bool):
    principal().require("upstreams", "manage")
    if len(slug) > 64 or db.session.scalar(db.select(UpstreamProvider.id).filter_by(slug=slug)) is None:
        raise unknown(f"upstream {slug!r}")
    done_or_refused(lambda: set_provider_enabled(slug, enabled, actor=principal().actor),
                    f"Upstream {slug} enabled." if enabled else f"Upstream {slug} disabled: its logins are refused.")
    return redirect(url_for(".upstreams"), 303)


@bp.post("/upstreams/<slug>/disable")
@console_login_required
def upstream_disable(slug: str):
    return _set_upstream_enabled(slug, False)


@bp.post("/upstreams/<slug>/enable")
@console_login_required
def upstream_enable(slug: str):
    return _set_upstream_enabled(slug, True)
