"""Writing a planned import batch (app.bulk_import.planning) in the batch's transaction: new
accounts, identities (and those an overwrite releases), profile claims, tenant attributes,
legacy mappings, merges, conflicts, and the job's checkpoint and counters. Many rows at once:
COPY on PostgreSQL, executemany elsewhere. A COPY that loses a race on a unique identifier to
a concurrent shard raises ``LostRace``, and the run replays the batch."""

from __future__ import annotations

import json
import re
from datetime import datetime

import psycopg
from sqlalchemy import JSON, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.bulk_import.batches import Batch
from app.bulk_import.models import AccountAttributes, ImportConflict, ImportJob, LegacyMapping
from app.bulk_import.planning import BatchPlan
from app.extensions import db
from app.merging.models import MergeRecord
from app.security import utcnow

PROFILE_FIELDS = (*PROFILE_CLAIMS, "address")


class LostRace(Exception):
    """A concurrent shard wrote one of this batch's identifiers first (unique violation, or a
    deadlock between the two inserts): the batch is rolled back and replayed."""


def write(plan: BatchPlan, batch: Batch) -> list[int]:
    """Write one planned batch, and the job's checkpoint and counters after it, in the caller's
    transaction (the run commits). Returns the ids of the merges it recorded."""
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


def _update_profiles(plan: BatchPlan, now) -> None:
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


def _write_attributes(plan: BatchPlan, account_of: dict, now) -> None:
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


def _dialect_insert(model):
    return (postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert)(model)
