"""Import jobs (flow 6): one job is one plan or run of a file for a tenant and a shard, with its
policies, counters and checkpoint. Starting one (or resuming the unfinished run of the same file
and shard), its summary and conflict report, the record of a run stopped by a ``fail``
conflict, and the jobs as operators read them (``tessera import jobs|show``, the admin API and
console: ``list_jobs``, ``job_details``, ``job_progress``, ``conflict_report_lines``). The dry run is app.bulk_import.dry_run, the run app.bulk_import.run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

from sqlalchemy import func, select

from app.bulk_import.conflicts import Conflict, ReportWriter
from app.bulk_import.models import ImportConflict, ImportJob
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.tenants.models import Tenant
from app.tenants.service import get_tenant

#: running (or stopped by a crash: a run of the same file resumes it) | completed | failed (a ``fail`` conflict)
STATUSES = ("running", "completed", "failed")
#: The most jobs one list returns, and the most conflicts one ``job_details`` shows.
LIST_LIMIT = 200
CONFLICTS_LIMIT = 10_000

COUNTERS = ("read", "created", "linked", "overwritten", "merged", "updated", "unchanged", "stale", "skipped",
            "invalid", "conflicts", "other_shards")

Progress = Callable[[ImportJob, int, int], None]


class ImportStopped(Exception):
    """A conflict whose policy is ``fail``: the run stops before the batch holding it."""

    def __init__(self, conflict: Conflict):
        super().__init__(f"line {conflict.line}: {conflict.kind} ({conflict.detail}); policy fail")
        self.conflict = conflict


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def start_job(path: str, tenant: str, *, mode: str, policies: dict, shard: tuple[int, int] = (0, 1)) -> ImportJob:
    """A new job, or — for a run of a file whose earlier run of the same shard did not finish —
    that job, to resume at its checkpoint with the policies given now."""
    tenant_row = db.session.scalar(select(Tenant).filter_by(slug=tenant))
    if tenant_row is None:
        raise NotFound(f"no tenant {tenant!r}")
    if not os.path.isfile(path):
        raise InvalidInput(f"no file {path}")
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise InvalidInput("--shard is i/n with 0 <= i < n")
    sha = file_sha256(path)
    job = None
    if mode == "run":
        job = db.session.scalar(
            select(ImportJob).filter_by(tenant_id=tenant_row.id, file_sha256=sha, mode="run", shard_index=index,
                                        shard_count=count)
            .where(ImportJob.status != "completed").order_by(ImportJob.id.desc()).limit(1)
        )
    if job is None:
        job = ImportJob(tenant_id=tenant_row.id, file_name=os.path.abspath(path)[-500:], file_sha256=sha, mode=mode,
                        shard_index=index, shard_count=count, counters=dict.fromkeys(COUNTERS, 0))
        db.session.add(job)
    job.policies, job.status, job.last_error = policies, "running", None
    db.session.commit()
    return job


def job_conflicts(job_id: int, limit: int | None = None):
    """The conflicts a job recorded, in file order (streamed), the first ``limit`` if given."""
    query = select(ImportConflict).filter_by(job_id=job_id).order_by(ImportConflict.line, ImportConflict.id)
    if limit is not None:
        query = query.limit(limit)
    rows = db.session.execute(query.execution_options(yield_per=2000)).scalars()
    for row in rows:
        yield Conflict(kind=row.kind, policy=row.policy, line=row.line, legacy_id=row.legacy_id, detail=row.detail,
                       other=row.other or {})


def conflict_report_lines(job_id: int):
    """The job's whole conflict report as JSON Lines (one conflict a line, in file order, streamed):
    what the admin API and the console download."""
    for conflict in job_conflicts(job_id):
        yield json.dumps(conflict.row(), ensure_ascii=False, sort_keys=True, default=str) + "\n"


def job_progress(job: ImportJob) -> float | None:
    """The share of its file a job has gone through (0–1): 1 once completed; while running (or
    after a failure) the committed checkpoint over the file's size, when the file is still where the
    job read it; None when that cannot be known (a plan keeps no checkpoint)."""
    if job.status == "completed":
        return 1.0
    if job.mode != "run":
        return None
    try:
        size = os.path.getsize(job.file_name)
    except OSError:
        return None
    return min(1.0, job.checkpoint_offset / size) if size > 0 else None


def write_report(job: ImportJob, directory: str) -> None:
    """Conflict report (CSV + JSON) and summary of a finished job."""
    writer = ReportWriter(directory)
    for conflict in job_conflicts(job.id):
        writer.write(conflict)
    writer.close(job_summary(job))


def job_summary(job: ImportJob) -> dict:
    return {"job": job.id, "mode": job.mode, "status": job.status, "file": job.file_name, "sha256": job.file_sha256,
            "shard": f"{job.shard_index}/{job.shard_count}", "policies": job.policies, "counters": job.counters,
            "checkpoint": {"offset": job.checkpoint_offset, "line": job.checkpoint_line},
            "last_error": job.last_error, **(job.counters.get("_plan") and {"plan": job.counters["_plan"]} or {})}


def record_stop(job_id: int, stop: ImportStopped) -> None:
    """The run stopped at a ``fail`` conflict: the job is ``failed``, the conflict recorded (committed)."""
    job = db.session.get(ImportJob, job_id)
    job.status, job.last_error = "failed", str(stop)[:2000]
    c = stop.conflict
    db.session.add(ImportConflict(job_id=job_id, kind=c.kind, policy=c.policy, line=c.line, legacy_id=c.legacy_id,
                                  other=c.other, detail=c.detail[:1000]))
    db.session.commit()


def list_jobs(*, tenant: str | None = None, status: str | None = None, limit: int = LIST_LIMIT) -> list[dict]:
    """The newest jobs first, at most ``limit``: of one tenant (slug) and/or one status. Each as
    ``job_summary`` with its tenant and times."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    if not 1 <= limit <= LIST_LIMIT:
        raise InvalidInput(f"the limit must be between 1 and {LIST_LIMIT}")
    query = (select(ImportJob, Tenant.slug).join(Tenant, Tenant.id == ImportJob.tenant_id)
             .order_by(ImportJob.id.desc()).limit(limit))
    if tenant is not None:
        query = query.where(ImportJob.tenant_id == get_tenant(tenant).id)
    if status is not None:
        query = query.where(ImportJob.status == status)
    return [_job_dict(job, slug) for job, slug in db.session.execute(query)]


def job_details(job_id: int, conflicts: int = 100) -> dict:
    """One job: its summary, tenant and times, its conflicts counted by kind and policy, and the
    first ``conflicts`` of them in file order (0–``CONFLICTS_LIMIT``; the whole report:
    ``tessera import plan|run --report-dir``)."""
    if not 0 <= conflicts <= CONFLICTS_LIMIT:
        raise InvalidInput(f"the number of conflicts shown must be between 0 and {CONFLICTS_LIMIT}")
    job = db.session.get(ImportJob, job_id)
    if job is None:
        raise NotFound(f"no import job {job_id}")
    data = _job_dict(job, db.session.scalar(select(Tenant.slug).filter_by(id=job.tenant_id)))
    by_kind = db.session.execute(
        select(ImportConflict.kind, ImportConflict.policy, func.count()).filter_by(job_id=job.id)
        .group_by(ImportConflict.kind, ImportConflict.policy).order_by(ImportConflict.kind, ImportConflict.policy))
    data["conflicts_by_kind"] = [{"kind": kind, "policy": policy, "count": count} for kind, policy, count in by_kind]
    data["conflicts_recorded"] = sum(row["count"] for row in data["conflicts_by_kind"])
    data["conflicts"] = [conflict.row() for conflict in job_conflicts(job.id, limit=conflicts)]
    return data


def _job_dict(job: ImportJob, tenant_slug: str) -> dict:
    return {**job_summary(job), "tenant": tenant_slug, "started_at": job.started_at, "updated_at": job.updated_at,
            "finished_at": job.finished_at}
