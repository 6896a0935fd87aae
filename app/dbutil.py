"""Database helpers that differ by dialect (SQLite for `make run`, PostgreSQL in production)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def insert_ignoring_conflicts(model, **values) -> None:
    """INSERT … ON CONFLICT DO NOTHING: for rows that concurrent requests may both add."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(insert(model).values(**values).on_conflict_do_nothing())

