"""The dry run of an import (``tessera import plan``): every record validated and every conflict
found — against the hub (the batch lookups of app.bulk_import.lookups) and within the file —
without writing any account; the conflict report, and a summary of what a run would do."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from itertools import groupby

from flask import current_app

from app.bulk_import.batches import Stub, read_batches
from app.bulk_import.conflicts import Conflict, ReportWriter
from app.bulk_import.jobs import COUNTERS, Progress
from app.bulk_import.lookups import existing_mappings, final_accounts, held_identifiers
from app.bulk_import.models import ImportConflict, ImportJob
from app.bulk_import.records import LegacyRecord, detect_format
from app.extensions import db
from app.security import utcnow


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
        for batch in read_batches(job, path, fmt, batch_size, region):
            counters["other_shards"] += batch.other_shards
            records = [item for item in batch.items if isinstance(item, LegacyRecord)]
            held = held_identifiers(tenant_id, records)
            mapped = existing_mappings(tenant_id, records)
            finals = final_accounts({m.account_id for m in mapped.values()}) if mapped else {}
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
                item = Stub(row[4], row[5])
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
