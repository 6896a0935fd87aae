"""Bulk import of a legacy account table (flow 6): the run (``tessera import run``). The dry run
is app.bulk_import.dry_run; starting and reporting a job, app.bulk_import.jobs.

A run streams the file in batches (app.bulk_import.batches). Each batch is one transaction: the
accounts, identities, legacy mappings, tenant attributes and conflicts of its records, and the
job's checkpoint (byte offset + line after the batch) and counters. A ``kill -9`` loses at most
the batch in flight, and the next run of the same file resumes at the checkpoint; even without
it, the legacy mappings (unique per tenant and legacy id, with the record's SHA-256) make a
re-run change nothing.

The fast path — a record whose identifiers nobody holds — costs three ``IN`` lookups per batch
(app.bulk_import.lookups) and a handful of multi-row INSERTs (app.bulk_import.writer). Records
that meet an identifier already held (on a hub account or on an earlier record) go through the
per-kind policies of ``conflicts.py`` (app.bulk_import.planning).

Shards (``--shard i/n``) split the records by a hash of the legacy id; n processes share one
database. Two shards that meet the same new verified phone at once both try to insert it: the
live-identity unique index refuses the second, whose batch rolls back and is replayed — it then
sees the phone as held, and links to that account.
"""

from __future__ import annotations

import logging
import os
import time

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.bulk_import.batches import Batch, Stub, read_batches
from app.bulk_import.jobs import ImportStopped, Progress, record_stop
from app.bulk_import.lookups import existing_mappings, final_accounts, held_identifiers
from app.bulk_import.models import ImportJob
from app.bulk_import.planning import BatchPlan
from app.bulk_import.records import LegacyRecord, detect_format
from app.bulk_import.writer import LostRace, write
from app.extensions import db
from app.merging.run import run_merge
from app.security import utcnow

log = logging.getLogger(__name__)

#: Replays of a batch that lost a race on a unique identifier to a concurrent shard.
MAX_REPLAYS = 8
#: A test hook for the crash test: the run kills itself (SIGKILL) after committing this many batches.
FAULT_ENV = "TESSERA_FAULT_KILL_AFTER_IMPORT_BATCHES"


def run_job(job: ImportJob, *, batch_size: int = 2000, fmt: str | None = None, progress: Progress | None = None) -> ImportJob:
    """Apply the file from the job's checkpoint to its end. Raises ImportStopped on a ``fail``
    conflict (the job is then ``failed``, its conflict recorded, earlier batches kept)."""
    path = job.file_name
    fmt = detect_format(path, fmt)
    total = os.path.getsize(path)
    job_id, tenant_id, policies = job.id, job.tenant_id, dict(job.policies)
    region = current_app.config["TESSERA_DEFAULT_REGION"]
    kill_after = int(os.environ.get(FAULT_ENV) or 0)
    batches = 0
    analyzing = True
    for batch in read_batches(job, path, fmt, batch_size, region):
        for attempt in range(MAX_REPLAYS):
            try:
                merges = _apply_batch(job_id, tenant_id, policies, batch)
                break
            except (IntegrityError, LostRace) as exc:
                # A concurrent shard (or run) took one of these identifiers: replay the batch,
                # which now sees it as held.
                db.session.rollback()
                log.warning("import job %s: the batch ending at line %s lost a race (%s); replay %d", job_id,
                            batch.end_line, " ".join(str(exc).split())[:300], attempt + 1)
                if attempt == MAX_REPLAYS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            except ImportStopped as stop:
                db.session.rollback()
                record_stop(job_id, stop)
                raise
        _run_merges(merges)
        batches += 1
        if analyzing:
            analyzing = _refresh_statistics()
        if kill_after and batches >= kill_after:
            os.kill(os.getpid(), 9)  # crash test: a real kill -9 right after a committed batch
        if progress:
            job = db.session.get(ImportJob, job_id)
            progress(job, job.checkpoint_offset, total)
    job = db.session.get(ImportJob, job_id)
    job.status, job.finished_at = "completed", utcnow()
    db.session.commit()
    return job


def _apply_batch(job_id: int, tenant_id: int, policies: dict, batch: Batch) -> list[int]:
    """Plan and write one batch in one transaction with the job's checkpoint. Returns the ids of
    the merges it recorded (to run after the commit)."""
    records = [item for item in batch.items if isinstance(item, LegacyRecord)]
    if db.session.get_bind().dialect.name == "postgresql":
        # The batch and its checkpoint commit together, so a commit lost to a PostgreSQL crash
        # (the last few hundred ms) loses both, and the next run redoes that batch: no need to
        # wait for the WAL flush at each commit.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    plan = BatchPlan(job_id, tenant_id, policies, held_identifiers(tenant_id, records))
    plan.counters["other_shards"] = batch.other_shards
    mapped = existing_mappings(tenant_id, records)
    finals = final_accounts({m.account_id for m in mapped.values()}) if mapped else {}
    ordered = []  # batch index → record (LegacyRecord) for the "other side" of conflicts
    for item in batch.items:
        ordered.append(item if isinstance(item, LegacyRecord) else Stub(item[0].line, item[1].legacy_id))
    for index, item in enumerate(batch.items):
        plan.counters["read"] += 1
        if not isinstance(item, LegacyRecord):
            raw, error = item
            plan.counters["invalid"] += 1
            plan.conflict("invalid_record", Stub(raw.line, error.legacy_id), error.detail)
            continue
        existing = mapped.get(item.legacy_id)
        if existing is None:
            plan.plan(index, item, ordered)
        elif existing.record_hash == item.record_hash:
            plan.counters["unchanged"] += 1
        elif item.updated_at and (existing.legacy_updated_at is None or item.updated_at > existing.legacy_updated_at):
            item.mapping_id = existing.id
            plan.plan(index, item, ordered, target=("acct", finals[existing.account_id]))
        else:
            plan.counters["stale"] += 1
    merges = write(plan, batch)
    db.session.commit()
    return merges


#: Past this many rows, a table's statistics are left to autovacuum: the batch lookups' plans no
#: longer change, and the planner scales its row estimates by the table's current size anyway.
ANALYZE_UP_TO_ROWS = 100_000


def _refresh_statistics() -> bool:
    """PostgreSQL: ANALYZE the tables the batch lookups read while they are young, each time one
    has doubled in size since its last statistics. A fresh table grows far faster than autovacuum
    re-analyzes it, and on the statistics of an empty table the planner scans the whole identity
    index for each lookup (seen: 40 ms per batch at 100k rows, growing). The size is the table's
    file (exact and immediate, whoever wrote it: other shards too), the last statistics are
    ``pg_class.relpages`` / ``reltuples``. Returns whether to look again after the next batch:
    False once both tables have statistics past ``ANALYZE_UP_TO_ROWS`` (an ANALYZE of 3M identities
    costs ≈ 1 s of database CPU; repeated by every shard at each of its own doublings, as before,
    that was 18 analyses per 1M records, 8–9 now)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return False
    rows = db.session.execute(text(
        "SELECT relname, reltuples, relpages, pg_relation_size(oid) / current_setting('block_size')::int AS pages"
        " FROM pg_class WHERE oid IN ('identities'::regclass, 'legacy_mappings'::regclass)")).all()
    young = [r for r in rows if r.reltuples < ANALYZE_UP_TO_ROWS]
    stale = sorted(r.relname for r in young if r.pages > 2 * max(r.relpages, 4))
    if stale:
        db.session.execute(text(f"ANALYZE {', '.join(stale)}"))
    db.session.commit()
    return bool(young)


def _run_merges(merge_ids: list[int]) -> None:
    """Run the merges the batch recorded (committed with it: if this process dies, ``tessera
    worker`` resumes them)."""
    for merge_id in merge_ids:
        try:
            run_merge(merge_id)
        except Exception:  # recorded on the merge; the worker retries it
            log.exception("import merge %s failed; the worker will retry it", merge_id)
