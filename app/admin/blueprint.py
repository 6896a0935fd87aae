"""The admin API's blueprint (/api/admin/v1) and what every resource module shares: its error
answers (RFC 9457 problems with a stable ``reason``), cursor pages, ETags with ``If-Match``, JSON
bodies. The tenant admin's reach (its tenant's clients, people related to its tenant) and the
cursor pages are ``app.admin.reach``'s, shared with the admin console.

Rules:

- Lists are pages of at most ``limit`` (1–200, default 50) items in id order with an opaque
  ``next_cursor`` (null on the last page); a cursor is only good for the list that gave it.
- Writes a lost update would hurt (tenant and client changes) take ``If-Match`` with the ETag of
  the resource as read: without it 428, with a stale one 412, checked under the row's lock.
- Whatever lies outside the caller's reach is answered 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, g, jsonify, request

from app.admin.principals import AdminRefusal
from app.admin.reach import MAX_ID, page_of, unknown
from app.errors import TesseraError
from app.extensions import csrf
from app.json_input import json_body
from app.problems import problem

bp = Blueprint("admin_api", __name__, url_prefix="/api/admin/v1")
csrf.exempt(bp)  # bearer-token API, no cookies

DEFAULT_LIMIT, MAX_LIMIT = 50, 200


@bp.errorhandler(AdminRefusal)
def _refused(error: AdminRefusal):
    return problem(error.status, error.title, error.detail, headers=error.headers, reason=error.reason)


_REASONS = {400: "invalid_request", 404: "not_found", 409: "conflict", 429: "rate_limited"}


@bp.errorhandler(TesseraError)
def _domain_error(error: TesseraError):
    if error.status == 503:  # a merge holds the account (AccountBusy): retry in a few seconds
        return problem(503, error.title, error.detail, headers={"Retry-After": "2"}, reason="account_busy")
    return problem(error.status, error.title, error.detail, reason=_REASONS.get(error.status, "invalid_request"))


@bp.errorhandler(404)
def _no_route(error):  # noqa: ARG001
    return problem(404, "Not found", "no such resource", reason="not_found")


@bp.errorhandler(405)
def _no_method(error):  # noqa: ARG001
    return problem(405, "Method not allowed", f"{request.method} is not allowed here", reason="method_not_allowed")


@bp.errorhandler(429)
def _rate_limited(error):
    return problem(429, "Too many requests", f"rate limit exceeded ({error.description}): slow down",
                   reason="rate_limited", headers={"Retry-After": "60"})


def refuse(status: int, reason: str, detail: str) -> AdminRefusal:
    titles = {400: "Invalid request", 404: "Not found", 409: "Conflict", 412: "Precondition failed",
              428: "Precondition required"}
    return AdminRefusal(status, reason, titles.get(status, "Refused"), detail)


# --- requests ------------------------------------------------------------------------------------

def body() -> dict:
    """The JSON object the request carries (400 otherwise)."""
    data = json_body()
    if not isinstance(data, dict):
        raise refuse(400, "invalid_request", "the body must be a JSON object")
    return data


def field(data: dict, name: str, kind, *, required: bool = False, nullable: bool = False):
    """``data[name]`` if it has the type ``kind`` (a type or tuple of types); 400 otherwise."""
    if name not in data:
        if required:
            raise refuse(400, "invalid_request", f"{name!r} is required")
        return None
    value = data[name]
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise refuse(400, "invalid_request", f"{name!r} has the wrong type")
    return value


def string_list(data: dict, name: str) -> list[str] | None:
    value = field(data, name, list)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise refuse(400, "invalid_request", f"{name!r} must be a list of strings")
    return value


def only_fields(data: dict, allowed) -> None:
    unknown_fields = set(data) - set(allowed)
    if unknown_fields:
        raise refuse(400, "invalid_request", f"unknown fields: {', '.join(sorted(unknown_fields))}")


def arg_int(name: str, default: int | None = None, *, low: int = 0, high: int = MAX_ID) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise refuse(400, "invalid_request", f"{name} must be an integer from {low} to {high}")
    return int(raw)


def arg_choice(name: str, choices) -> str | None:
    """The query argument ``name``, one of ``choices`` (400 otherwise), or None when absent."""
    value = request.args.get(name)
    if value is not None and value not in choices:
        raise refuse(400, "invalid_request", f"{name} must be one of {', '.join(choices)}")
    return value


def path_id(value: str, what: str) -> int:
    """A numeric id from the path; anything else is unknown (404)."""
    if not value.isdigit() or int(value) > MAX_ID:
        raise unknown(what)
    return int(value)


# --- pages ---------------------------------------------------------------------------------------

def page(query, id_column, to_dict, *, newest_first: bool = False):
    """One page of ``query`` in id order (``newest_first``: descending) as a JSON answer
    ``{"items": [...], "next_cursor": ...}`` (``reach.page_of``, the console's pages too)."""
    limit = arg_int("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    result = page_of(query, id_column, limit=limit, cursor=request.args.get("cursor"), newest_first=newest_first)
    return answer({"items": [to_dict(r) for r in result.rows], "next_cursor": result.next_cursor})


# --- answers -------------------------------------------------------------------------------------

def _jsonable(value):
    return json.loads(json.dumps(value, default=_default))


def _default(value):
    isoformat = getattr(value, "isoformat", None)
    if isoformat is None:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return isoformat() + ("Z" if getattr(value, "tzinfo", True) is None else "")


def answer(data, status: int = 200, etag: bool = False, headers: dict | None = None):
    """A JSON answer, not cached (admin data is personal or secret); datetimes in ISO 8601 UTC."""
    data = _jsonable(data)
    response = jsonify(data)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if etag:
        response.headers["ETag"] = etag_of(data)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def etag_of(data) -> str:
    digest = hashlib.sha256(json.dumps(_jsonable(data), sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(current) -> None:
    """The request's ``If-Match`` names ``current``'s ETag (428 without one, 412 when stale)."""
    wanted = request.headers.get("If-Match")
    if not wanted:
        raise refuse(428, "precondition_required", "send If-Match with the ETag of the resource as you read it")
    tags = {t.strip() for t in wanted.split(",")}
    if "*" not in tags and etag_of(current) not in tags:
        raise refuse(412, "precondition_failed", "the resource changed since you read it: read it again")


def principal():
    return g.principal
