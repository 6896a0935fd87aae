"""Fixtures: one app per test session on a real database (SQLite file, or PostgreSQL when
TESSERA_TEST_DATABASE_URL is set), every table emptied after each test (signing keys are kept,
so RSA keys are generated once per run)."""

from __future__ import annotations

import os
import tempfile

import pytest
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.factories import Factories
from tests.rp import Browser

ISSUER = "http://localhost"


def _database_url(tmp_dir: str) -> str:
    return os.environ.get("TESSERA_TEST_DATABASE_URL") or f"sqlite:///{tmp_dir}/tessera-test.db"


def make_test_app(database_url: str, **overrides):
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TESSERA_ISSUER": ISSUER,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "TESSERA_ALLOW_PRIVATE_OUTBOUND": True,
        # Rate limiting stays on (it is part of what is tested) with limits no test reaches by accident.
        "TESSERA_RATE_LIMITS_ENABLED": True,
        "TESSERA_LOGIN_RATE_LIMIT": "1000 per minute",
        "TESSERA_TOKEN_RATE_LIMIT": "10000 per minute",
        "SERVER_NAME": None,
    }
    config.update(overrides)
    from app.config import normalize_database_url

    config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(config["SQLALCHEMY_DATABASE_URI"])
    return create_app(config)


@pytest.fixture(scope="session")
def database_url():
    with tempfile.TemporaryDirectory() as tmp_dir:
        yield _database_url(tmp_dir)


@pytest.fixture(scope="session")
def app(database_url):
    app = make_test_app(database_url)
    with app.app_context():
        db.drop_all()
        db.create_all()  # tests only: the schema of a deployment comes from migrations
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _empty_tables(app) -> None:
    # The per-process caches assume rows are never deleted and ids never reused, which only
    # holds outside tests: empty them with the tables.
    for cache in ("tessera_caches", "tessera_subjects", "tessera_session_clients"):
        app.extensions.pop(cache, None)
    with app.app_context():
        db.session.remove()
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name != "signing_keys"]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(t.name for t in tables) + " RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(table.delete())


@pytest.fixture(autouse=True)
def _clean_database(request):
    yield
    if "app" in request.fixturenames:
        _empty_tables(request.getfixturevalue("app"))


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def http(app):
    """An HTTP client speaking to the app (Flask's test client: real requests, no socket)."""
    return app.test_client()


@pytest.fixture
def factories(app):
    return Factories(app)


@pytest.fixture
def browser(app):
    return Browser(app.test_client(), ISSUER)


@pytest.fixture
def receiver():
    from tests.receiver import Receiver

    r = Receiver()
    yield r
    r.close()
