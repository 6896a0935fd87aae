"""Database helpers that differ by dialect (SQLite for `make run`, PostgreSQL in production)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


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
