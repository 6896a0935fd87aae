"""RFC 9457 problem details. ``reason`` is a stable, machine-readable code (an extension member,
RFC 9457 3.2): clients branch on it, never on ``title`` or ``detail``."""

from __future__ import annotations

from flask import jsonify


def problem(status: int, title: str, detail: str, headers: dict | None = None, *, reason: str, **extra):
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail, "reason": reason, **extra})
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
