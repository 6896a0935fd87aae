"""Database helpers that differ by dialect (SQLite for `make run`, PostgreSQL in production), and
the ON DELETE rules of the schema applied by hand (SQLite enforces no foreign keys)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def identifier(length: int) -> String:
    """A column of machine identifiers (phone numbers, normalized emails, usernames, upstream
    subjects, legacy ids): compared byte by byte. On PostgreSQL that is the "C" collation — the
    database's own (en_US, ICU…) would order them linguistically, which means nothing for an
    identifier and makes every index comparison a strcoll() call (a bulk import's database CPU per
    record: 61 µs with "C", 66 under a C.UTF-8 database, 71 under ICU en-US). Equality is the same:
    a database's default collation is deterministic. SQLite compares bytes already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def insert_ignoring_conflicts(model, **values) -> None:
    """INSERT … ON CONFLICT DO NOTHING: for rows that concurrent requests may both add."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(model).values(**values).on_conflict_do_nothing())


def commit_if_begun() -> None:
    """Commit the request's session if anything used it: read paths that may record something
    on a cache miss (a first subject mapping) otherwise cost no transaction at all."""
    if db.session().in_transaction():
        db.session.commit()


def autocommit_engine():
    """The app's engine with autocommit: a read that needs no transaction of its own (a token
    lookup, the cache versions) costs no BEGIN … ROLLBACK round trips."""
    engine = current_app.extensions.get("tessera_read_engine")
    if engine is None:
        engine = current_app.extensions["tessera_read_engine"] = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def delete_dependents(table: Table, ids: list[int]) -> dict[str, int]:
    """Apply, explicitly, the ON DELETE rules the schema declares on every foreign key to the rows
    ``ids`` of ``table`` (SQLite enforces none): ``CASCADE`` deletes the referencing rows (their own
    dependents first), ``SET NULL`` empties the reference. A reference without a rule would forbid
    the delete: ``ValueError`` names its table. Returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    if not ids:
        return deleted
    for child in db.metadata.sorted_tables:
        for fk in child.foreign_keys:
            if fk.column.table is not table:
                continue
            rule = (fk.ondelete or "").upper()
            referencing = fk.parent.in_(ids)
            if rule == "SET NULL":
                db.session.execute(child.update().where(referencing).values({fk.parent.name: None}))
            elif rule == "CASCADE":
                if _is_referenced(child):  # its rows' own dependents first
                    (key,) = child.primary_key.columns
                    child_ids = list(db.session.scalars(select(key).where(referencing)))
                    for name, count in delete_dependents(child, child_ids).items():
                        deleted[name] = deleted.get(name, 0) + count
                count = db.session.execute(child.delete().where(referencing)).rowcount
                deleted[child.name] = deleted.get(child.name, 0) + count
            else:
                raise ValueError(f"rows of {child.name} refer to it")
    return deleted


def _is_referenced(table: Table) -> bool:
    return any(fk.column.table is table for child in db.metadata.sorted_tables for fk in child.foreign_keys)
