"""How the hub answers an error: a refused domain action (``TesseraError``) is an RFC 9457 problem
for protocol clients and JSON callers and a page for people; werkzeug's own refusals under
``/api/`` are problems too; a 429 is JSON for protocol clients, a page for people. Registered on
the app by ``create_app``; a feature may handle a more specific error itself (merging handles
``NeedsMerge``) and fall back to ``render_domain_error``."""

from __future__ import annotations

from flask import Flask, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from app.errors import TesseraError
from app.problems import problem

#: ``reason`` of the problems the JSON APIs answer for werkzeug's own refusals.
HTTP_ERROR_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                      415: "unsupported_media_type"}


def render_domain_error(error: TesseraError):
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


def too_many_requests(error):  # noqa: ARG001
    if request.blueprint == "oidc":  # protocol clients get JSON, people get a page
        return jsonify(error="invalid_request", error_description="too many requests, slow down"), 429
    return render_template("errors/rate_limited.html"), 429


def http_error(error: HTTPException):
    """werkzeug's own refusals (413 beyond MAX_CONTENT_LENGTH, 405, an unreadable form, and the
    500 of an unhandled exception, logged by Flask first) are RFC 9457 problems on the JSON
    APIs under /api; elsewhere werkzeug's page."""
    if error.code is None or not request.path.startswith("/api/"):
        return error
    reason = HTTP_ERROR_REASONS.get(error.code, "invalid_request" if error.code < 500 else "server_error")
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}  # Allow, …
    return problem(error.code, error.name, error.description, headers=headers, reason=reason)


def init_app(app: Flask) -> None:
    app.register_error_handler(TesseraError, render_domain_error)
    app.register_error_handler(429, too_many_requests)
    app.register_error_handler(HTTPException, http_error)
