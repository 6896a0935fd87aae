"""Import jobs (flow 6): one job is one plan or run of a file for a tenant and a shard, with its
policies, counters and checkpoint. Starting one (or resuming the unfinished run of the same file
and shard), its summary and conflict report, and the record of a run stopped by a ``fail``
conflict. The dry run is app.bulk_import.dry_run, the run app.bulk_import.run."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from sqlalchemy import select

from app.bulk_import.conflicts import Conflict, ReportWriter
from app.bulk_import.models import ImportConflict, ImportJob
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.tenants.models import Tenant

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


def job_conflicts(job_id: int):
    """The conflicts a job recorded, in file order (streamed)."""
    rows = db.session.execute(
        select(ImportConflict).filter_by(job_id=job_id).order_by(ImportConflict.line, ImportConflict.id)
        .execution_options(yield_per=2000)
    ).scalars()
    for row in rows:
        yield Conflict(kind=row.kind, policy=row.policy, line=row.line, legacy_id=row.legacy_id, detail=row.detail,
                       other=row.other or {})


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
