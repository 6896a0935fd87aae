"""RFC 9457 problem details."""

from __future__ import annotations

from flask import jsonify


def problem(status: int, title: str, detail: str, headers: dict | None = None, **extra):
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra})
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
