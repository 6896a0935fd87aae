"""Tessera: create_app wires config → extensions → blueprints → CLI."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import check_production_safety, load_config
from app.errors import TesseraError
from app.extensions import csrf, db, limiter
from app.http_headers import add_security_headers
from app.input_guard import refuse_nul_characters
from app.partners.problems import problem

#: ``reason`` of the problems the JSON APIs answer for werkzeug's own refusals.
HTTP_ERROR_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                      415: "unsupported_media_type"}


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder="../templates", instance_relative_config=False)
    app.config.update(load_config())
    app.config.update(overrides or {})
    check_production_safety(app.config)

    if app.config["TESSERA_TRUSTED_PROXIES"]:
        n = app.config["TESSERA_TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)

    _ensure_sqlite_directory(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    csrf.init_app(app)
    app.config["RATELIMIT_ENABLED"] = app.config["TESSERA_RATE_LIMITS_ENABLED"]
    app.config["RATELIMIT_STORAGE_URI"] = app.config["TESSERA_REDIS_URL"] or "memory://"
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)

    from app import models  # noqa: F401  (every table registered on the metadata)
    from app.oidc.server import AuthorizationServer, init_authorization_server

    server = AuthorizationServer()
    init_authorization_server(app, server)
    app.extensions["tessera_authorization_server"] = server

    from app.accounts.routes import bp as accounts_bp
    from app.accounts.self_service import bp as account_bp
    from app.bulk_import.routes import bp as sync_bp
    from app.federation.routes import bp as federation_bp
    from app.merging.routes import bp as merging_bp
    from app.oidc.routes import bp as oidc_bp
    from app.partners.routes import bp as partners_bp
    from app.web import bp as web_bp

    for blueprint in (oidc_bp, accounts_bp, account_bp, merging_bp, federation_bp, partners_bp, sync_bp, web_bp):
        app.register_blueprint(blueprint)

    from app.bulk_import.links import init_app as init_legacy_links

    init_legacy_links(app)

    from app.cli import register_commands

    register_commands(app)

    @app.errorhandler(TesseraError)
    def domain_error(error: TesseraError):
        """A service refused: the protocol clients get an RFC 9457 problem, people a page."""
        if request.blueprint == "oidc" or request.accept_mimetypes.best == "application/json":
            response = jsonify(type="about:blank", title=error.title, status=error.status, detail=error.detail)
            response.mimetype = "application/problem+json"
        else:
            response = make_response(render_template("errors/bad_request.html", detail=error.detail, title=error.title))
        response.status_code = error.status
        if error.status == 503:
            response.headers["Retry-After"] = "5"
        if getattr(error, "retry_after", None):  # a spent budget (app.budgets.BudgetSpent)
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(429)
    def too_many_requests(error):
        if request.blueprint == "oidc":  # protocol clients get JSON, people get a page
            return jsonify(error="invalid_request", error_description="too many requests, slow down"), 429
        return render_template("errors/rate_limited.html"), 429

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """werkzeug's own refusals (413 beyond MAX_CONTENT_LENGTH, 405, an unreadable form, and the
        500 of an unhandled exception, logged by Flask first) are RFC 9457 problems on the JSON
        APIs under /api; elsewhere werkzeug's page."""
        if error.code is None or not request.path.startswith("/api/"):
            return error
        reason = HTTP_ERROR_REASONS.get(error.code, "invalid_request" if error.code < 500 else "server_error")
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}  # Allow, …
        return problem(error.code, error.name, error.description, headers=headers, reason=reason)

    app.before_request(refuse_nul_characters)
    app.after_request(add_security_headers)

    @app.teardown_appcontext
    def _remove_session(exc):  # noqa: ARG001
        db.session.remove()

    return app


def init_migrations(app: Flask) -> None:
    """Flask-Migrate (Alembic) for the ``tessera db`` commands. Only the command line loads it:
    web workers never migrate, and Alembic with its templates costs each of them ~15 MB."""
    from flask_migrate import Migrate

    Migrate(app, db, directory=str(_root() / "migrations"), render_as_batch=True)


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


def _ensure_sqlite_directory(url: str) -> None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
