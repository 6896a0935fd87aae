"""create_app: config → observability → tracing → extensions → registries → error pages → each domain's ``init_app``.

The shell of the layers (docs/architecture.md): it imports every domain, and nothing imports it but
the entry points (app/wsgi.py, the ``tessera`` command, the tests). A domain's ``init_app``
registers its blueprint and its commands, connects its signal receivers (app/signals.py) and fills the registries
(app/registries.py: login fallbacks, business-data tables, periodic jobs) and the authorization
server's grants; the order below is the order of the worker's periodic jobs."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import error_pages, housekeeping, models, observability, registries, tracing, web  # noqa: F401  (models: every table on the metadata)
from app.accounts import wiring as accounts
from app.admin import wiring as admin
from app.bulk_import import wiring as bulk_import
from app.config import check_production_safety, load_config
from app.extensions import csrf, db, limiter
from app.federation import wiring as federation
from app.http_headers import add_security_headers
from app.input_guard import refuse_nul_characters
from app.merging import wiring as merging
from app.mfa import wiring as mfa
from app.oidc import wiring as oidc
from app.partners import wiring as partners
from app.tenants import wiring as tenants

#: Each domain's init_app, protocol first (the features register grants on its server).
DOMAINS = (oidc, tenants, accounts, merging, partners, federation, bulk_import, admin, mfa, housekeeping, web)


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask("app", template_folder="../templates", instance_relative_config=False)
    app.config.update(load_config())
    app.config.update(overrides or {})
    check_production_safety(app.config)

    if app.config["TESSERA_TRUSTED_PROXIES"]:
        n = app.config["TESSERA_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)

    # First: the request id and the clock exist before any other before_request runs.
    observability.init_app(app)
    # Before the database is bound: the engine it creates is then traced (when OTEL_* asks for it).
    tracing.init_app(app)

    _ensure_sqlite_directory(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    csrf.init_app(app)
    app.config["RATELIMIT_ENABLED"] = app.config["TESSERA_RATE_LIMITS_ENABLED"]
    app.config["RATELIMIT_STORAGE_URI"] = app.config["TESSERA_REDIS_URL"] or "memory://"
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)

    registries.init_app(app)
    error_pages.init_app(app)
    for domain in DOMAINS:
        domain.init_app(app)

    app.before_request(refuse_nul_characters)
    app.after_request(add_security_headers)

    @app.teardown_appcontext
    def _remove_session(exc):  # noqa: ARG001
        db.session.remove()

    return app


def init_migrations(app: Flask) -> None:
    """Flask-Migrate (Alembic) for the ``tessera db`` commands. Only the command line loads it:
    web workers never migrate, and Alembic with its templates costs each of them ~15 MB."""
    from flask_migrate import Migrate  # measured start-up cost (above), not a cycle

    Migrate(app, db, directory=str(_root() / "migrations"), render_as_batch=True)


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


def _ensure_sqlite_directory(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
