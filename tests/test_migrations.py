"""The Alembic migrations build the schema the models describe.

On an empty database, ``tessera db upgrade`` (Flask-Migrate → ``alembic upgrade head``) must
succeed, and ``tessera db check`` (autogenerate compared against the models) must then find
nothing to do: a model change without its migration is drift, and a deployment (which only runs
migrations, never ``create_all``) would not have that change.

Runs the real console command in subprocesses, on a fresh SQLite file and — when
``TESSERA_TEST_DATABASE_URL`` names a PostgreSQL server — on a fresh, uniquely named database
on that server (never the database the rest of the suite uses).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

TESSERA = str(Path(sys.executable).with_name("tessera"))
NO_DRIFT = "No new upgrade operations detected"


def _env(tmp_path: Path, database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=database_url,
        TESSERA_INSTANCE_DIR=str(tmp_path / "instance"),
        TESSERA_SECRET_KEY="migration-test-secret-key-0123456789abcdef",
    )
    return env


def _tessera(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TESSERA, *args], cwd=tmp_path, env=_env(tmp_path, database_url),
        capture_output=True, text=True, timeout=120,
    )


def _describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def _upgrade_then_check(tmp_path: Path, database_url: str, show_current: bool = True) -> None:
    upgrade = _tessera(tmp_path, database_url, "db", "upgrade")
    assert upgrade.returncode == 0, _describe(upgrade)
    assert "Running upgrade" in upgrade.stdout + upgrade.stderr, _describe(upgrade)

    if show_current:
        current = _tessera(tmp_path, database_url, "db", "current")
        assert current.returncode == 0, _describe(current)
        assert "(head)" in current.stdout, _describe(current)

    check = _tessera(tmp_path, database_url, "db", "check")
    assert check.returncode == 0, _describe(check)
    assert NO_DRIFT in check.stdout + check.stderr, _describe(check)


def test_sqlite_upgrade_head_has_no_drift(tmp_path):
    db_file = tmp_path / "migrated.db"
    assert not db_file.exists()
    _upgrade_then_check(tmp_path, f"sqlite:///{db_file}")
    assert db_file.exists()


def test_sqlite_downgrade_to_base_and_upgrade_again(tmp_path):
    """Every migration's downgrade undoes its upgrade: base leaves only alembic's own table."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    for args in (("db", "upgrade"), ("db", "downgrade", "base")):
        result = _tessera(tmp_path, url, *args)
        assert result.returncode == 0, _describe(result)
    with sqlite3.connect(tmp_path / "roundtrip.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables <= {"alembic_version"}, tables
    _upgrade_then_check(tmp_path, url, show_current=False)


@pytest.fixture
def fresh_postgres_url():
    """A new, empty database on the server of TESSERA_TEST_DATABASE_URL, dropped afterwards."""
    url = os.environ.get("TESSERA_TEST_DATABASE_URL", "")
    if not url.startswith(("postgresql", "postgres:")):
        pytest.skip("PostgreSQL variant: set TESSERA_TEST_DATABASE_URL=postgresql://... to run it")
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(url)
    params = {k: v for k, v in {"host": server.host, "port": server.port, "user": server.username,
                                 "password": server.password}.items() if v is not None}
    name = f"tessera_mig_{secrets.token_hex(6)}"
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **params) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **params) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgresql_upgrade_head_has_no_drift(tmp_path, fresh_postgres_url):
    _upgrade_then_check(tmp_path, fresh_postgres_url)
