"""Fixtures: one app per test session on a real database (SQLite file, or PostgreSQL when
TESSERA_TEST_DATABASE_URL is set), every table emptied after each test (signing keys are kept,
so RSA keys are generated once per run)."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import settings
from sqlalchemy import text

from app.factory import create_app
from app.extensions import db
from tests.factories import Factories
from tests.rp import Browser

ISSUER = "http://localhost"

# Hypothesis (the fuzz suite in tests/fuzz, and the property tests): no deadline (the machine may be
# loaded), and the blob that replays a failure printed with it (README "Reproducing a Hypothesis
# failure"). In CI (CI=true) the examples are derived from each test's name (derandomize), so a red
# run is the same run again; elsewhere they are random and remembered in .hypothesis/.
settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True, database=None)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def _database_url(tmp_dir: str) -> str:
    return os.environ.get("TESSERA_TEST_DATABASE_URL") or f"sqlite:///{tmp_dir}/tessera-test.db"


#: Every budget and rate limit, set far above what the suite reaches (every test comes from
#: 127.0.0.1 and the counters outlive a test); the tests of a budget lower it (``budgets``).
BUDGET_SETTINGS = (
    "TESSERA_CREDENTIAL_BUDGET_ADDRESS", "TESSERA_CREDENTIAL_BUDGET_TARGET", "TESSERA_CREDENTIAL_BUDGET_LOGGED_IN",
    "TESSERA_CREDENTIAL_BUDGET_SPRAY", "TESSERA_CLIENT_AUTH_BUDGET_ADDRESS", "TESSERA_CLIENT_AUTH_BUDGET_CLIENT",
    "TESSERA_TOKEN_RATE_LIMIT", "TESSERA_SMS_BUDGET_ADDRESS", "TESSERA_SMS_BUDGET_NUMBER",
    "TESSERA_SMS_BUDGET_ACCOUNT", "TESSERA_SMS_BUDGET_PREFIX", "TESSERA_SMS_BUDGET_GLOBAL",
    "TESSERA_MAIL_BUDGET_ADDRESS", "TESSERA_MAIL_BUDGET_RECIPIENT",
)
GENEROUS_BUDGETS = {key: "100000 per minute" for key in BUDGET_SETTINGS}


def make_test_app(database_url: str, **overrides):
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TESSERA_ISSUER": ISSUER,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "TESSERA_ALLOW_PRIVATE_OUTBOUND": True,
        # Rate limiting stays on (it is part of what is tested) with limits no test reaches by accident.
        "TESSERA_RATE_LIMITS_ENABLED": True,
        **GENEROUS_BUDGETS,
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
def budgets(app):
    """Budgets for one test, on emptied counters: ``budgets(defaults=True)`` puts every budget at
    its shipped default (``app.config.load_config``), keywords set single ones. Restored after."""
    from app.config import load_config
    from app.extensions import limiter

    def configure(defaults: bool = False, **settings):
        limiter.reset()
        if defaults:
            shipped = load_config()
            app.config.update({key: shipped[key] for key in BUDGET_SETTINGS})
        app.config.update(settings)

    yield configure
    app.config.update(GENEROUS_BUDGETS)
    limiter.reset()


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
