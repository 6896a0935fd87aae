"""A character no request may carry: NUL (U+0000). No PostgreSQL text column holds it, so a path,
query or form value with one fails at the database (a 500) wherever it is looked up or stored; no
protocol parameter, identifier or form field has a use for it. Refused at the door with a 400 (an
RFC 9457 problem under /api, werkzeug's page elsewhere, never a redirect). JSON bodies are checked
by their parser (app/json_input.py)."""

from __future__ import annotations

from flask import abort, request

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _holds_nul(items) -> bool:
    return any("\x00" in name or "\x00" in value for name, value in items)


def refuse_nul_characters() -> None:
    """``before_request``."""
    if "\x00" in request.path or _holds_nul(request.args.items(multi=True)):
        abort(400, "the request holds a NUL character")
    if request.mimetype in FORM_TYPES and _holds_nul(request.form.items(multi=True)):
        abort(400, "the request holds a NUL character")
