"""Bulk import of a legacy account table (flow 6): ``plan`` (dry run + conflict report) and ``run``.

A run streams the file in batches. Each batch is one transaction: the accounts, identities,
legacy mappings, tenant attributes and conflicts of its records, and the job's checkpoint (byte
offset + line after the batch) and counters. A ``kill -9`` loses at most the batch in flight, and
the next run of the same file resumes at the checkpoint; even without it, the legacy mappings
(unique per tenant and legacy id, with the record's SHA-256) make a re-run change nothing.

The fast path — a record whose identifiers nobody holds — costs three ``IN`` lookups per batch
and a handful of multi-row INSERTs. Records that meet an identifier already held (on a hub
account or on an earlier record) go through the per-kind policies of ``conflicts.py``.

Shards (``--shard i/n``) split the records by a hash of the legacy id; n processes share one
database. Two shards that meet the same new verified phone at once both try to insert it: the
live-identity unique index refuses the second, whose batch rolls back and is replayed — it then
sees the phone as held, and links to that account.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

import orjson
import psycopg
from flask import current_app
from sqlalchemy import JSON, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.bulk_import.conflicts import Conflict, ReportWriter
from app.bulk_import.hashes import normalize_legacy_hash
from app.bulk_import.models import AccountAttributes, ImportConflict, ImportJob, LegacyMapping
from app.bulk_import.records import InvalidRecord, LegacyRecord, RawRecord, detect_format, parse_record, read_records, shard_of
from app.errors import InvalidInput, NotFound
from app.extensions import db
from app.merging.models import MergeRecord
from app.security import utcnow
from app.tenants.models import Tenant

log = logging.getLogger(__name__)

COUNTERS = ("read", "created", "linked", "overwritten", "merged", "updated", "unchanged", "stale", "skipped",
            "invalid", "conflicts", "other_shards")
#: Replays of a batch that lost a race on a unique identifier to a concurrent shard.
MAX_REPLAYS = 8
PROFILE_FIELDS = (*PROFILE_CLAIMS, "address")
#: A test hook for the crash test: the run kills itself (SIGKILL) after committing this many batches.
FAULT_ENV = "TESSERA_FAULT_KILL_AFTER_IMPORT_BATCHES"

Progress = Callable[[ImportJob, int, int], None]


class LostRace(Exception):
    """A concurrent shard wrote one of this batch's identifiers first (unique violation, or a
    deadlock between the two inserts): the batch is rolled back and replayed."""


class ImportStopped(Exception):
    """A conflict whose policy is ``fail``: the run stops before the batch holding it."""

    def __init__(self, conflict: Conflict):
        super().__init__(f"line {conflict.line}: {conflict.kind} ({conflict.detail}); policy fail")
        self.conflict = conflict


# --- jobs ------------------------------------------------------------------------------------------
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


# --- reading in batches ------------------------------------------------------------------------------
@dataclass
class Batch:
    items: list = field(default_factory=list)  # LegacyRecord | (RawRecord, InvalidRecord)
    legacy_ids: set = field(default_factory=set)
    end_offset: int = 0
    end_line: int = 0
    other_shards: int = 0


def _batches(job: ImportJob, path: str, fmt: str, batch_size: int, region: str):
    """The job's records from its checkpoint, validated, in batches (a legacy id at most once per
    batch: a repeated one starts the next batch, so it sees the first one's mapping)."""
    batch = Batch(end_offset=job.checkpoint_offset, end_line=job.checkpoint_line)
    shard = (job.shard_index, job.shard_count)
    for raw in read_records(path, fmt, offset=job.checkpoint_offset, line=job.checkpoint_line, shard=shard):
        if job.shard_count > 1 and (raw.other_shard or (raw.other_shard is None
                                                         and _shard_of_raw(raw, job.shard_count) != job.shard_index)):
            batch.other_shards += 1  # another shard's: not even validated here
        else:
            item = _validate(raw, region)
            legacy_id = item.legacy_id if isinstance(item, LegacyRecord) else item[1].legacy_id
            if legacy_id and legacy_id in batch.legacy_ids:
                yield batch
                batch = Batch(end_offset=batch.end_offset, end_line=batch.end_line)
            batch.items.append(item)
            if legacy_id:
                batch.legacy_ids.add(legacy_id)
        batch.end_offset, batch.end_line = raw.end_offset, raw.line
        if len(batch.items) >= batch_size or batch.other_shards >= batch_size * 4:
            yield batch
            batch = Batch(end_offset=batch.end_offset, end_line=batch.end_line)
    if batch.items or batch.other_shards or batch.end_offset != job.checkpoint_offset:
        yield batch


def _shard_of_raw(raw: RawRecord, count: int) -> int:
    """The shard of a record as read: by its legacy id (as validation will read it), else by line."""
    legacy_id = (raw.data or {}).get("legacy_id")
    if isinstance(legacy_id, int) and not isinstance(legacy_id, bool):
        legacy_id = str(legacy_id)
    if isinstance(legacy_id, str) and legacy_id.strip():
        return shard_of(legacy_id.strip(), count)
    return raw.line % count


def _validate(raw: RawRecord, region: str):
    if raw.error:
        return raw, InvalidRecord(raw.error)
    try:
        return parse_record(raw, region=region, normalize_hash=normalize_legacy_hash)
    except InvalidRecord as exc:
        return raw, exc


# --- the run -----------------------------------------------------------------------------------------
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
    for batch in _batches(job, path, fmt, batch_size, region):
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
                _record_stop(job_id, stop)
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


def _record_stop(job_id: int, stop: ImportStopped) -> None:
    job = db.session.get(ImportJob, job_id)
    job.status, job.last_error = "failed", str(stop)[:2000]
    c = stop.conflict
    db.session.add(ImportConflict(job_id=job_id, kind=c.kind, policy=c.policy, line=c.line, legacy_id=c.legacy_id,
                                  other=c.other, detail=c.detail[:1000]))
    db.session.commit()


def _run_merges(merge_ids: list[int]) -> None:
    """Run the merges the batch recorded (committed with it: if this process dies, ``tessera
    worker`` resumes them)."""
    from app.merging.run import run_merge

    for merge_id in merge_ids:
        try:
            run_merge(merge_id)
        except Exception:  # recorded on the merge; the worker retries it
            log.exception("import merge %s failed; the worker will retry it", merge_id)


@dataclass
class _Owner:
    ref: tuple  # ("acct", account id) or ("rec", index in the batch)
    verified: bool


class _BatchPlan:
    """What one batch writes, decided record by record against the identifiers already held
    (``owners``: hub accounts and the batch's earlier records)."""

    def __init__(self, job_id: int, tenant_id: int, policies: dict, owners: dict):
        self.job_id, self.tenant_id, self.policies, self.owners = job_id, tenant_id, policies, owners
        self.now = utcnow()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.conflicts: list[Conflict] = []
        self.new_accounts: dict[int, dict] = {}  # batch index → account row
        self.identities: dict[tuple, tuple] = {}  # (kind, namespace, value) → (ref, verified, unionid)
        self.releases: list[tuple] = []  # identities of hub accounts moved away (overwrite)
        self.profile_updates: dict[int, dict] = {}  # hub account id → claims to set
        self.profile_fills: dict[int, dict] = {}  # hub account id → claims to set where empty
        self.attributes: dict[tuple, dict] = {}  # ref → attributes
        self.mappings: list[tuple] = []  # (record, ref)
        self.mapping_updates: list[LegacyRecord] = []
        self.merges: list[tuple] = []  # (survivor ref, absorbed ref, record)

    def conflict(self, kind: str, record, detail: str, policy: str | None = None, **other) -> None:
        policy = policy or self.policies[kind]
        line = record.line
        legacy_id = record.legacy_id
        c = Conflict(kind=kind, policy=policy, line=line, legacy_id=legacy_id, detail=detail,
                     other={k: v for k, v in other.items() if v is not None})
        if policy == "fail":
            raise ImportStopped(c)
        self.conflicts.append(c)

    def other_side(self, owner: _Owner, records: list) -> dict:
        kind, ref = owner.ref
        if kind == "acct":
            return {"account_id": ref}
        other = records[ref]
        return {"legacy_ids": [other.legacy_id], "lines": [other.line]}

    # -- one record --
    def plan(self, index: int, record: LegacyRecord, records: list, target: tuple | None = None) -> None:
        updating = target is not None
        for kind, detail in record.problems:
            self.conflict(kind, record, detail)
        merge_into = None
        overwrite = False
        phone_key = ("phone", "", record.phone) if record.phone else None
        phone_owner = self.owners.get(phone_key) if phone_key else None
        if not updating and phone_owner is not None:
            if phone_owner.verified and record.phone_verified:
                policy = self.policies["same_phone"]
                self.conflict("same_phone", record, f"verified phone {record.phone} is on another account: one person",
                              value=record.phone, **self.other_side(phone_owner, records))
                if policy == "skip":
                    self.counters["skipped"] += 1
                    return
                if policy == "merge":
                    merge_into = phone_owner.ref
                else:
                    target, overwrite = phone_owner.ref, policy == "overwrite"
        if target is None and merge_into is None and record.email:
            owner = self.owners.get(("email", "", record.email))
            if owner and self.policies["shared_email"] == "link" and owner.verified and record.email_verified:
                self.conflict("shared_email", record, f"verified email {record.email} is on another account",
                              value=record.email, **self.other_side(owner, records))
                target = owner.ref
        if target is None and merge_into is None and self.policies["same_upstream"] == "link":
            for up in record.upstreams:
                owner = self.owners.get(("upstream", up.provider, up.subject)) or (
                    up.unionid and self.owners.get(("unionid", up.provider, up.unionid)))
                if owner:
                    self.conflict("same_upstream", record, f"upstream {up.provider} {up.subject} is on another account",
                                  value=f"{up.provider}:{up.subject}", **self.other_side(owner, records))
                    target = owner.ref
                    break
        ref = target or ("rec", index)
        self._identities(record, ref, records, phone_linked=phone_owner is not None and (target == phone_owner.ref or merge_into is not None))

        if updating:
            self.counters["updated"] += 1
            self._profile(ref, record, replace=True)
            self.mapping_updates.append(record)
        else:
            if target is None:
                self.new_accounts[index] = _account_row(record, self.now)
                self.counters["created"] += 1
            else:
                self.counters["overwritten" if overwrite else "linked"] += 1
                self._profile(ref, record, replace=overwrite)
            self.mappings.append((record, ref))
            if merge_into is not None:
                self.merges.append((merge_into, ref, record))
                self.counters["merged"] += 1
        if record.attributes:
            self.attributes[ref] = {**self.attributes.get(ref, {}), **record.attributes}

    def _identities(self, record: LegacyRecord, ref: tuple, records: list, phone_linked: bool) -> None:
        wanted = []
        if record.phone:
            wanted.append(("same_phone", ("phone", "", record.phone), record.phone_verified, None))
        if record.email:
            wanted.append(("shared_email", ("email", "", record.email), record.email_verified, None))
        if record.username:
            wanted.append(("duplicate_username", ("username", str(self.tenant_id), record.username), True, None))
        for up in record.upstreams:
            wanted.append(("same_upstream", ("upstream", up.provider, up.subject), True, up))
        for kind, key, verified, upstream in wanted:
            owner = self.owners.get(key)
            if owner is None and upstream is not None and upstream.unionid:
                owner = self.owners.get(("unionid", upstream.provider, upstream.unionid))
            if owner is not None and owner.ref == ref:
                continue  # already on this account
            if owner is not None:
                if kind == "same_phone":
                    if not phone_linked:
                        why = ("not verified on both sides" if not (owner.verified and verified)
                               else "the record is joined to another account")
                        self.conflict(kind, record, f"phone {key[2]} is on another account ({why}): imported without it",
                                      policy="fail" if self.policies[kind] == "fail" else "skip",
                                      value=key[2], **self.other_side(owner, records))
                    continue
                policy = self.policies[kind]
                applied = "skip" if policy == "link" else policy
                self.conflict(kind, record, f"{key[0]} {key[2]} is on another account"
                              + ("" if applied == "overwrite" else ": imported without it"),
                              policy=applied, value=key[2] if key[0] != "upstream" else f"{key[1]}:{key[2]}",
                              **self.other_side(owner, records))
                if applied != "overwrite":
                    continue
                if owner.ref[0] == "acct":
                    self.releases.append(key)
            self.identities[key] = (ref, verified, upstream.unionid if upstream else None)
            self.owners[key] = _Owner(ref, verified)
            if upstream is not None and upstream.unionid:
                self.owners[("unionid", upstream.provider, upstream.unionid)] = _Owner(ref, True)

    def _profile(self, ref: tuple, record: LegacyRecord, *, replace: bool) -> None:
        claims = dict(record.profile)
        if record.password_hash:
            claims["password_hash"] = record.password_hash
        if ref[0] == "rec":
            row = self.new_accounts[ref[1]]
            for claim, value in claims.items():
                if replace or row.get(claim) is None:
                    row[claim] = value
        elif replace:
            self.profile_updates.setdefault(ref[1], {}).update(claims)
        else:
            fills = self.profile_fills.setdefault(ref[1], {})
            for claim, value in claims.items():
                fills.setdefault(claim, value)


def _account_row(record: LegacyRecord, now) -> dict:
    row = {"status": "active", "password_hash": record.password_hash, "created_at": record.created_at or now,
           "updated_at": now}
    row.update(record.profile)
    return row


def _dialect_insert(model):
    return (postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert)(model)


def _chunks(values: list, size: int = 1000):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _held_identifiers(tenant_id: int, records: list[LegacyRecord]) -> dict:
    """Live identities on hub accounts that any of these records names: key → owner."""
    phones = {r.phone for r in records if r.phone}
    emails = {r.email for r in records if r.email}
    usernames = {r.username for r in records if r.username}
    # Upstream lookups name the provider: both indexes (kind, namespace, value) and (namespace,
    # unionid) lead with it.
    subjects: dict[str, set] = {}
    unionids: dict[str, set] = {}
    for r in records:
        for u in r.upstreams:
            subjects.setdefault(u.provider, set()).add(u.subject)
            if u.unionid:
                unionids.setdefault(u.provider, set()).add(u.unionid)
    lookups = [("phone", "", "value", phones), ("email", "", "value", emails),
               ("username", str(tenant_id), "value", usernames)]
    lookups += [("upstream", provider, "value", values) for provider, values in subjects.items()]
    lookups += [("upstream", provider, "unionid", values) for provider, values in unionids.items()]
    owners = {}
    for kind, namespace, value, account_id, verified, unionid in _live_identities(lookups):
        owners[(kind, namespace, value)] = _Owner(("acct", account_id), bool(verified))
        if kind == "upstream" and unionid:
            owners[("unionid", namespace, unionid)] = _Owner(("acct", account_id), True)
    return owners


#: ``= ANY`` of a text array passed as one JSON text: orjson writes it in C, where psycopg builds
#: an array parameter element by element in Python (0.5 vs 1.1 ms of client CPU per 1000 values;
#: the same index scan, the array being an InitPlan).
_ANY_TEXT = "ANY(ARRAY(SELECT json_array_elements_text(CAST(:values AS json))))"


def _json_array(values: list[str]) -> str:
    return orjson.dumps(values).decode()


def _live_identities(lookups: list[tuple]):
    """Live identity rows (kind, namespace, value, account_id, verified, unionid) for each
    (kind, namespace, column, values). PostgreSQL: one ``= ANY(array)`` query per lookup (one
    parameter: no 1000-placeholder statement to build, convert and plan per batch, see
    ``_ANY_TEXT``); elsewhere ``IN`` lists of 1000."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    columns = (Identity.kind, Identity.namespace, Identity.value, Identity.account_id, Identity.verified, Identity.unionid)
    for kind, namespace, column, values in lookups:
        if not values:
            continue
        if postgres:
            yield from db.session.execute(text(
                "SELECT kind, namespace, value, account_id, verified, unionid FROM identities"
                f" WHERE released_at IS NULL AND kind = :kind AND namespace = :ns AND {column} = {_ANY_TEXT}"
            ), {"kind": kind, "ns": namespace, "values": _json_array(sorted(values))})
            continue
        for chunk in _chunks(sorted(values)):
            yield from db.session.execute(select(*columns).where(
                Identity.released_at.is_(None), Identity.kind == kind, Identity.namespace == namespace,
                Identity.__table__.c[column].in_(chunk)))


def _mapped(tenant_id: int, records: list[LegacyRecord]) -> dict:
    """legacy id → its mapping row (id, legacy_id, account_id, record_hash, legacy_updated_at)."""
    if not records:
        return {}
    legacy_ids = [r.legacy_id for r in records]
    if db.session.get_bind().dialect.name == "postgresql":
        rows = db.session.execute(text(
            "SELECT id, legacy_id, account_id, record_hash, legacy_updated_at FROM legacy_mappings"
            f" WHERE tenant_id = :tenant AND legacy_id = {_ANY_TEXT}"), {"tenant": tenant_id, "values": _json_array(legacy_ids)})
        return {row.legacy_id: row for row in rows}
    return {row.legacy_id: row for row in db.session.execute(
        select(LegacyMapping.id, LegacyMapping.legacy_id, LegacyMapping.account_id, LegacyMapping.record_hash,
               LegacyMapping.legacy_updated_at)
        .where(LegacyMapping.tenant_id == tenant_id, LegacyMapping.legacy_id.in_(legacy_ids)))}


def _final_accounts(account_ids: set[int]) -> dict[int, int]:
    """account id → the account it ended in (following merged_into)."""
    final = {a: a for a in account_ids}
    pending = set(account_ids)
    for _ in range(32):
        if not pending:
            break
        rows = db.session.execute(
            select(Account.id, Account.merged_into_id).where(Account.id.in_(pending), Account.merged_into_id.is_not(None))
        ).all()
        step = dict(rows)
        for start, current in final.items():
            if current in step:
                final[start] = step[current]
        pending = set(step.values())
    return final


def _apply_batch(job_id: int, tenant_id: int, policies: dict, batch: Batch) -> list[int]:
    """Plan and write one batch in one transaction with the job's checkpoint. Returns the ids of
    the merges it recorded (to run after the commit)."""
    records = [item for item in batch.items if isinstance(item, LegacyRecord)]
    if db.session.get_bind().dialect.name == "postgresql":
        # The batch and its checkpoint commit together, so a commit lost to a PostgreSQL crash
        # (the last few hundred ms) loses both, and the next run redoes that batch: no need to
        # wait for the WAL flush at each commit.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    plan = _BatchPlan(job_id, tenant_id, policies, _held_identifiers(tenant_id, records))
    plan.counters["other_shards"] = batch.other_shards
    mapped = _mapped(tenant_id, records)
    finals = _final_accounts({m.account_id for m in mapped.values()}) if mapped else {}
    ordered = []  # batch index → record (LegacyRecord) for the "other side" of conflicts
    for item in batch.items:
        ordered.append(item if isinstance(item, LegacyRecord) else _Stub(item[0].line, item[1].legacy_id))
    for index, item in enumerate(batch.items):
        plan.counters["read"] += 1
        if not isinstance(item, LegacyRecord):
            raw, error = item
            plan.counters["invalid"] += 1
            plan.conflict("invalid_record", _Stub(raw.line, error.legacy_id), error.detail)
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
    merges = _write(plan, batch)
    db.session.commit()
    return merges


@dataclass
class _Stub:
    line: int
    legacy_id: str | None


def _write(plan: _BatchPlan, batch: Batch) -> list[int]:
    session = db.session
    now = utcnow()
    account_ids = _insert_accounts(plan.new_accounts)

    def resolve(ref: tuple) -> int:
        return ref[1] if ref[0] == "acct" else account_ids[ref[1]]

    identities = Identity.__table__
    for kind, namespace, value in plan.releases:
        session.execute(update(Identity).where(Identity.kind == kind, Identity.namespace == namespace,
                                               Identity.value == value, Identity.released_at.is_(None)).values(released_at=now))
    if plan.identities:
        _bulk_insert(identities, ("account_id", "kind", "namespace", "value", "verified", "unionid", "legacy_tenant_id",
                                  "created_at"), [
            (resolve(ref), kind, namespace, value, verified, unionid, plan.tenant_id, now)
            # in key order: two shards inserting the same identifiers wait on each other in the same
            # order, so one waits for the other's commit instead of both deadlocking
            for (kind, namespace, value), (ref, verified, unionid) in sorted(plan.identities.items())
        ])
    _update_profiles(plan, now)
    if plan.attributes:
        _write_attributes(plan, {ref: resolve(ref) for ref in plan.attributes}, now)
    if plan.mappings:
        # A record that got an account of its own created it (also when a merge then folds it into
        # another: the mapping, moved to the survivor, stops counting as its creator).
        _bulk_insert(LegacyMapping.__table__, ("tenant_id", "legacy_id", "account_id", "source", "created_account",
                                               "legacy_updated_at", "record_hash", "created_at", "updated_at"), [
            (plan.tenant_id, record.legacy_id, resolve(ref), "import", ref[0] == "rec", record.updated_at,
             record.record_hash, now, now)
            for record, ref in plan.mappings
        ])
    if plan.mapping_updates:
        table = LegacyMapping.__table__
        session.execute(
            table.update().where(table.c.id == bindparam("mapping_id"))
            .values(record_hash=bindparam("hash"), legacy_updated_at=bindparam("legacy_updated"), updated_at=now),
            [{"mapping_id": r.mapping_id, "hash": r.record_hash, "legacy_updated": r.updated_at} for r in plan.mapping_updates],
        )
    merge_ids = []
    for survivor_ref, absorbed_ref, record in plan.merges:
        merge = MergeRecord(survivor_id=resolve(survivor_ref), absorbed_id=resolve(absorbed_ref), origin="import",
                            reason=f"import job {plan.job_id} line {record.line} (legacy id {record.legacy_id}): same verified phone",
                            report={})
        session.add(merge)
        session.flush()
        merge_ids.append(merge.id)
    if plan.conflicts:
        _bulk_insert(ImportConflict.__table__, ("job_id", "kind", "policy", "line", "legacy_id", "other", "detail", "created_at"), [
            (plan.job_id, c.kind, c.policy, c.line, c.legacy_id, c.other, c.detail[:1000], now) for c in plan.conflicts
        ])
    plan.counters["conflicts"] = len(plan.conflicts)
    job = session.get(ImportJob, plan.job_id)
    counters = dict(job.counters or {})
    for name, value in plan.counters.items():
        counters[name] = counters.get(name, 0) + value
    session.execute(update(ImportJob).where(ImportJob.id == plan.job_id).values(
        checkpoint_offset=batch.end_offset, checkpoint_line=batch.end_line, counters=counters, updated_at=now))
    session.expire(job)
    return merge_ids


def _update_profiles(plan: _BatchPlan, now) -> None:
    """Profile claims the batch writes to hub accounts: replaced (overwrite, update) or filled where
    empty (link). One SELECT for the accounts to fill, then one UPDATE statement per set of columns
    (executemany), not two round trips per account."""
    accounts = Account.__table__
    changes = {account_id: dict(claims) for account_id, claims in plan.profile_updates.items() if claims}
    fills = {account_id: claims for account_id, claims in plan.profile_fills.items() if claims}
    if fills:
        wanted = sorted({c for claims in fills.values() for c in claims})
        rows = db.session.execute(select(accounts.c.id, *(accounts.c[c] for c in wanted))
                                  .where(accounts.c.id.in_(sorted(fills))))
        for row in rows:
            current, replaced = row._mapping, changes.get(row.id, {})  # replaced: written first, as before
            missing = {c: v for c, v in fills[row.id].items() if current[c] is None and c not in replaced}
            if missing:
                changes.setdefault(row.id, {}).update(missing)
    by_columns: dict[tuple, list[dict]] = {}
    for account_id, claims in sorted(changes.items()):
        by_columns.setdefault(tuple(sorted(claims)), []).append({"_account_id": account_id, **claims})
    for columns, params in by_columns.items():
        stmt = accounts.update().where(accounts.c.id == bindparam("_account_id")).values(
            {**{c: bindparam(c) for c in columns}, "updated_at": now})
        db.session.execute(stmt, params)


def _insert_accounts(rows: dict[int, dict]) -> dict[int, int]:
    """Insert the batch's new accounts; batch index → account id."""
    if not rows:
        return {}
    table = Account.__table__
    if db.session.get_bind().dialect.name == "postgresql":
        # Ids drawn from the sequence in one query, then COPY: no RETURNING round trip per row.
        # The sequence is looked up once per query (OFFSET 0 keeps the subquery from being folded
        # into the row loop), not once per row as ``nextval(pg_get_serial_sequence(...))`` did.
        ids = db.session.scalars(text(
            "SELECT nextval(q.seq) FROM (SELECT pg_get_serial_sequence('accounts', 'id')::regclass AS seq OFFSET 0) q,"
            " generate_series(1, :n)"), {"n": len(rows)}).all()
        columns = ("id", "status", "password_hash", "created_at", "updated_at", *PROFILE_FIELDS)
        account_ids = dict(zip(rows, ids))
        values = columns[1:]
        _bulk_insert(table, columns, [(account_ids[i], *map(row.get, values)) for i, row in rows.items()])
        return account_ids
    account_ids = {}
    by_shape: dict[tuple, list[tuple[int, dict]]] = {}
    for index, row in rows.items():
        by_shape.setdefault(tuple(sorted(row)), []).append((index, row))
    for shaped in by_shape.values():
        result = db.session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True),
                                    [row for _, row in shaped])
        for (index, _), account_id in zip(shaped, result.scalars()):
            account_ids[index] = account_id
    return account_ids


def _bulk_insert(table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert many rows: COPY on PostgreSQL (≈ 10× a multi-row INSERT from Python), executemany
    elsewhere. JSON columns take Python objects."""
    if not rows:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        json_columns = {i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)}
        cursor = db.session.connection().connection.driver_connection.cursor()
        sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        try:
            with cursor.copy(sql) as copy:
                copy.write(_copy_text(rows, json_columns))
        except (psycopg.errors.IntegrityError, psycopg.errors.DeadlockDetected) as exc:
            # The driver's own error (this cursor is not SQLAlchemy's): the batch lost a race to
            # another shard, and is replayed.
            raise LostRace(str(exc)) from exc
        return
    db.session.execute(table.insert(), [dict(zip(columns, row)) for row in rows])


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_NULL = "\\N"
_BOOL_TEXT = {True: "t", False: "f", None: _NULL}


def _copy_text(rows: list[tuple], json_columns: set[int]) -> str:
    """The rows in COPY's text format, built column by column (≈ 1.8× the row-by-row loop, ≈ 5× psycopg's
    per-row ``write_row``, which looks up a dumper for every value): str (escaped), int, bool,
    None, naive datetime, and JSON values (``json.dumps``, as SQLAlchemy's JSON type writes them)
    in ``json_columns``. A column holds one type (and None)."""
    columns = [_column_text(list(values), i in json_columns) for i, values in enumerate(zip(*rows))]
    lines = list(map("\t".join, zip(*columns)))
    lines.append("")
    return "\n".join(lines)


def _column_text(values: list, is_json: bool) -> list[str]:
    """One column's cells as COPY text. Strings are searched for characters to escape all at once
    (joined), and one by one only when the column has some."""
    if is_json:
        values = [None if v is None else json.dumps(v) for v in values]
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return [_NULL] * len(values)
    if len(kinds) > 1:
        raise TypeError("COPY of a column of " + " and ".join(sorted(k.__name__ for k in kinds)))
    kind = kinds.pop()
    if kind is str:
        present = [v for v in values if v is not None]
        if _NEEDS_ESCAPE.search("".join(present)):
            values = [v.translate(_COPY_ESCAPES) if v is not None and _NEEDS_ESCAPE.search(v) else v for v in values]
        return values if len(present) == len(values) else [_NULL if v is None else v for v in values]
    if kind is bool:
        return list(map(_BOOL_TEXT.__getitem__, values))
    if kind is int:
        return [_NULL if v is None else str(v) for v in values] if None in values else list(map(str, values))
    if kind is datetime:
        text_of = {v: _NULL if v is None else _datetime_text(v) for v in set(values)}
        return list(map(text_of.__getitem__, values))
    raise TypeError(f"COPY of a {kind.__name__} value")


def _datetime_text(value: datetime) -> str:
    if value.tzinfo is not None:
        raise TypeError("COPY of an aware datetime into a UTC column")
    return value.isoformat(" ")


def _write_attributes(plan: _BatchPlan, account_of: dict, now) -> None:
    data = {}
    for ref, attrs in plan.attributes.items():
        account_id = account_of[ref]
        data[account_id] = {**data.get(account_id, {}), **attrs}
    existing_ids = [a for ref, a in account_of.items() if ref[0] == "acct"]
    if existing_ids:
        for account_id, current in db.session.execute(
            select(AccountAttributes.account_id, AccountAttributes.data)
            .where(AccountAttributes.tenant_id == plan.tenant_id, AccountAttributes.account_id.in_(existing_ids))
        ):
            data[account_id] = {**(current or {}), **data[account_id]}
    existing = set(existing_ids)
    # New accounts have no attributes yet: a plain (COPY) insert; hub accounts: an upsert.
    _bulk_insert(AccountAttributes.__table__, ("account_id", "tenant_id", "data", "updated_at"),
                 [(a, plan.tenant_id, d, now) for a, d in data.items() if a not in existing])
    if existing:
        stmt = _dialect_insert(AccountAttributes.__table__)
        stmt = stmt.on_conflict_do_update(index_elements=["account_id", "tenant_id"],
                                          set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at})
        db.session.execute(stmt, [{"account_id": a, "tenant_id": plan.tenant_id, "data": d, "updated_at": now}
                                  for a, d in data.items() if a in existing])


# --- the plan (dry run) ------------------------------------------------------------------------------
def plan_job(job: ImportJob, report_dir: str, *, batch_size: int = 2000, fmt: str | None = None,
             progress: Progress | None = None) -> dict:
    """Validate every record and find every conflict without writing any account: against the
    hub (batched lookups) and within the file (the records' identifiers go to a temporary
    on-disk SQLite index, so memory stays flat). Writes the report; returns the summary."""
    path = job.file_name
    fmt = detect_format(path, fmt)
    total = os.path.getsize(path)
    policies, tenant_id = dict(job.policies), job.tenant_id
    region = current_app.config["TESSERA_DEFAULT_REGION"]
    writer = ReportWriter(report_dir)
    counters = dict.fromkeys(COUNTERS, 0)
    by_kind: dict[str, int] = {}
    unknown_fields: set[str] = set()
    stops: list[dict] = []
    pending_rows: list[dict] = []

    def report(conflict: Conflict) -> None:
        writer.write(conflict)
        counters["conflicts"] += 1
        by_kind[conflict.kind] = by_kind.get(conflict.kind, 0) + 1
        if conflict.policy == "fail" and len(stops) < 10:
            stops.append({"line": conflict.line, "kind": conflict.kind})
        pending_rows.append({"job_id": job.id, "kind": conflict.kind, "policy": conflict.policy, "line": conflict.line,
                             "legacy_id": conflict.legacy_id, "other": conflict.other, "detail": conflict.detail[:1000],
                             "created_at": utcnow()})

    def flush_rows() -> None:
        if pending_rows:
            db.session.execute(ImportConflict.__table__.insert(), pending_rows)
            pending_rows.clear()
        db.session.commit()

    with tempfile.TemporaryDirectory(prefix="tessera-plan-") as tmp:
        index = sqlite3.connect(os.path.join(tmp, "keys.db"))
        index.execute("CREATE TABLE keys (kind TEXT, ns TEXT, value TEXT, verified INT, line INT, legacy_id TEXT, held INT)")
        for batch in _batches(job, path, fmt, batch_size, region):
            counters["other_shards"] += batch.other_shards
            records = [item for item in batch.items if isinstance(item, LegacyRecord)]
            held = _held_identifiers(tenant_id, records)
            mapped = _mapped(tenant_id, records)
            finals = _final_accounts({m.account_id for m in mapped.values()}) if mapped else {}
            rows = []
            for item in batch.items:
                counters["read"] += 1
                if not isinstance(item, LegacyRecord):
                    raw, error = item
                    counters["invalid"] += 1
                    report(Conflict("invalid_record", policies["invalid_record"], raw.line, error.legacy_id, error.detail))
                    continue
                unknown_fields.update(item.unknown_fields)
                for kind, detail in item.problems:
                    report(Conflict(kind, policies[kind], item.line, item.legacy_id, detail))
                existing = mapped.get(item.legacy_id)
                own = ("acct", finals[existing.account_id]) if existing else None
                if existing is None:
                    counters["created"] += 1  # refined below: conflicts may turn it into a link
                elif existing.record_hash == item.record_hash:
                    counters["unchanged"] += 1
                    continue
                elif item.updated_at and (existing.legacy_updated_at is None or item.updated_at > existing.legacy_updated_at):
                    counters["updated"] += 1
                else:
                    counters["stale"] += 1
                    continue
                for kind, key, verified, shown in _record_keys(item, tenant_id):
                    owner = held.get(key)
                    if owner is None and key[0] == "upstream":
                        unionid = shown[1]
                        owner = unionid and held.get(("unionid", key[1], unionid))
                    if owner is not None and owner.ref != own:
                        report(_planned_conflict(kind, policies, item, key, verified and owner.verified,
                                                 {"account_id": owner.ref[1]}))
                    rows.append((key[0], key[1], key[2], int(verified), item.line, item.legacy_id, int(owner is not None)))
                    if key[0] == "upstream" and shown[1]:
                        rows.append(("unionid", key[1], shown[1], 1, item.line, item.legacy_id, int(owner is not None)))
            index.executemany("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            flush_rows()
            if progress:
                progress(job, batch.end_offset, total)
        index.commit()
        index.execute("CREATE INDEX ix_keys ON keys (kind, ns, value, line)")
        duplicates = index.execute(
            "SELECT k.kind, k.ns, k.value, k.verified, k.line, k.legacy_id FROM keys k JOIN ("
            " SELECT kind, ns, value FROM keys GROUP BY kind, ns, value"
            " HAVING COUNT(DISTINCT legacy_id) > 1 AND MAX(held) = 0) d"
            " ON k.kind = d.kind AND k.ns = d.ns AND k.value = d.value ORDER BY k.kind, k.ns, k.value, k.line")
        kinds = {"phone": "same_phone", "email": "shared_email", "username": "duplicate_username",
                 "upstream": "same_upstream", "unionid": "same_upstream"}
        for (kind, ns, value), group in groupby(duplicates, key=lambda r: r[:3]):
            group = list(group)
            first = group[0]
            for row in group[1:]:
                if row[5] == first[5]:
                    continue
                item = _Stub(row[4], row[5])
                report(_planned_conflict(kinds[kind], policies, item, (kind, ns, value), bool(row[3] and first[3]),
                                         {"legacy_ids": [first[5]], "lines": [first[4]]}))
                if kinds[kind] == "same_phone" and row[3] and first[3] and policies["same_phone"] in ("link", "overwrite"):
                    counters["created"] -= 1
                    counters["linked"] += 1
        index.close()
    summary = {
        "job": job.id, "mode": "plan", "file": path, "sha256": job.file_sha256, "shard": f"{job.shard_index}/{job.shard_count}",
        "policies": policies, "records": counters["read"],
        "would": {"create": counters["created"], "link_by_phone": counters["linked"], "update": counters["updated"],
                  "leave_unchanged": counters["unchanged"], "ignore_stale": counters["stale"],
                  "skip_invalid": counters["invalid"]},
        "conflicts": counters["conflicts"], "conflicts_by_kind": by_kind, "other_shards": counters["other_shards"],
        "run_would_stop_at": stops[0] if stops else None, "ignored_fields": sorted(unknown_fields),
    }
    job = db.session.get(ImportJob, job.id)
    job.counters, job.status, job.finished_at = {**counters, "_plan": summary["would"]}, "completed", utcnow()
    flush_rows()
    writer.close(summary)
    return summary


def _record_keys(record: LegacyRecord, tenant_id: int):
    """(conflict kind, identity key, verified, (shown value, unionid)) for each identifier."""
    if record.phone:
        yield "same_phone", ("phone", "", record.phone), record.phone_verified, (record.phone, None)
    if record.email:
        yield "shared_email", ("email", "", record.email), record.email_verified, (record.email, None)
    if record.username:
        yield "duplicate_username", ("username", str(tenant_id), record.username), True, (record.username, None)
    for up in record.upstreams:
        yield "same_upstream", ("upstream", up.provider, up.subject), True, (f"{up.provider}:{up.subject}", up.unionid)


def _planned_conflict(kind: str, policies: dict, record, key: tuple, both_verified: bool, other: dict) -> Conflict:
    """The conflict a run would record for an identifier held elsewhere, with the policy it would apply."""
    policy = policies[kind]
    value = key[2] if key[0] not in ("upstream", "unionid") else f"{key[1]}:{key[2]}"
    if kind == "same_phone":
        if both_verified:
            detail = f"verified phone {value} is on another account: one person"
        else:
            detail = f"phone {value} is on another account (not verified on both sides): imported without it"
            policy = "fail" if policy == "fail" else "skip"
    elif kind == "shared_email" and policy == "link" and not both_verified:
        policy, detail = "skip", f"email {value} is on another account (not verified on both sides): imported without it"
    else:
        detail = f"{key[0]} {value} is on another account"
    return Conflict(kind=kind, policy=policy, line=record.line, legacy_id=record.legacy_id, detail=detail,
                    other={**other, "value": value})
