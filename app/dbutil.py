"""Database helpers that differ by dialect (SQLite for `make run`, PostgreSQL in production)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import String
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
