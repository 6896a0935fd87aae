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
    """Every migration's downgrade undoes its upgrade: base leaves only alembic's own table (and
    SQLite's internal ``sqlite_sequence``, which AUTOINCREMENT creates and nothing can drop)."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    for args in (("db", "upgrade"), ("db", "downgrade", "base")):
        result = _tessera(tmp_path, url, *args)
        assert result.returncode == 0, _describe(result)
    with sqlite3.connect(tmp_path / "roundtrip.db") as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}
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


def test_sqlite_0010_backfills_what_legacy_records_created(tmp_path):
    """0010: a mapping created its account when it is the account's first and no identity of the
    account is older than it by more than 5 seconds; its identities of that moment are the tenant's."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'backfill.db'}"
    result = _tessera(tmp_path, url, "db", "upgrade", "0009")
    assert result.returncode == 0, _describe(result)
    conn = sqlite3.connect(tmp_path / "backfill.db")
    with conn:
        conn.execute("INSERT INTO tenants (id, slug, name, branding, policy, created_at) "
                     "VALUES (1, 'acme', 'Acme', '{}', '{}', '2024-01-01 00:00:00')")
        for account_id in (1, 2):
            conn.execute("INSERT INTO accounts (id, status, created_at, updated_at) "
                         "VALUES (?, 'active', '2024-01-01 00:00:00', '2024-01-01 00:00:00')", (account_id,))
        identities = [(1, "phone", "+14155550100", "2024-03-01 10:00:00.100000"),  # written with mapping 1
                      (2, "phone", "+14155550101", "2023-01-01 10:00:00"),  # the person's, long before
                      (2, "username", "bob", "2024-03-01 10:00:00.200000")]  # added by the link
        for account_id, kind, value, at in identities:
            conn.execute("INSERT INTO identities (account_id, kind, namespace, value, verified, created_at) "
                         "VALUES (?, ?, '', ?, 1, ?)", (account_id, kind, value, at))
        for legacy_id, account_id in (("created", 1), ("linked", 2), ("second", 1)):
            conn.execute("INSERT INTO legacy_mappings (tenant_id, legacy_id, account_id, source, created_at, updated_at) "
                         "VALUES (1, ?, ?, 'sync', '2024-03-01 10:00:00.300000', '2024-03-01 10:00:00.300000')",
                         (legacy_id, account_id))
    conn.close()
    result = _tessera(tmp_path, url, "db", "upgrade")
    assert result.returncode == 0, _describe(result)
    conn = sqlite3.connect(tmp_path / "backfill.db")
    created = dict(conn.execute("SELECT legacy_id, created_account FROM legacy_mappings"))
    tenants = dict(conn.execute("SELECT value, legacy_tenant_id FROM identities"))
    conn.close()
    assert created == {"created": 1, "linked": 0, "second": 0}
    assert tenants == {"+14155550100": 1, "+14155550101": None, "bob": None}
