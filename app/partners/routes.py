"""Partner API routes (JSON; RFC 9457 problems with a stable ``reason``). Thin: parse, call one
service, render. The contract is served at /api/openapi.json (app/partners/openapi.py)."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request, url_for

from app.errors import TesseraError
from app.extensions import csrf
from app.json_input import json_body
from app.partners import addresses, lookup, people, reads, writes
from app.partners.auth import client_token_required
from app.partners.changes import changes_since
from app.partners.contracts import PartnerError
from app.partners.mapping import resolve_subject
from app.partners.openapi import openapi_document
from app.problems import problem

bp = Blueprint("partners", __name__, url_prefix="/api")
csrf.exempt(bp)  # bearer-token API, no cookies

CURSOR_RE = re.compile(r"^[0-9]{1,18}$")
#: A cursor is the id of a change-log row: a 32-bit integer (PostgreSQL refuses a bigger one in the query).
MAX_CURSOR = 2**31 - 1


@bp.errorhandler(PartnerError)
def partner_error(error: PartnerError):
    return problem(error.status, error.title, error.detail, headers=error.headers, reason=error.reason, **error.extra)


@bp.errorhandler(TesseraError)
def domain_error(error: TesseraError):
    # A merge holds the account (AccountBusy, 503): retry in a few seconds.
    if error.status == 503:
        return problem(503, error.title, error.detail, headers={"Retry-After": "2"}, reason="account_busy")
    return problem(error.status, error.title, error.detail, reason="invalid_request")


@bp.errorhandler(429)
def rate_limited(error):
    return problem(429, "Too many requests", f"rate limit exceeded ({error.description}): slow down", reason="rate_limited")


def _json_body():
    body = json_body()  # MalformedJSON (400, invalid_request) if it is not a JSON document
    if body is None:
        raise PartnerError(400, "invalid_request", "Invalid request", "the body must be JSON")
    return body


def _personal(response, etag: str | None = None):
    response.headers["Cache-Control"] = "no-store"
    if etag:
        response.headers["ETag"] = etag
    return response


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app.config["TESSERA_ISSUER"]))


@bp.get("/subjects/<sub>")
@client_token_required("partner:lookup")
def subject_status(sub: str):
    """What became of a subject this client holds: active, merged into another, or closed."""
    result = resolve_subject(g.client, sub)
    if result is None:
        return problem(404, "Unknown subject", "this client's sector has no such subject", reason="unknown_subject")
    return jsonify(result)


@bp.get("/users/<sub>")
@client_token_required("partner:read")
def read_user(sub: str):
    body = reads.read_user(g.client, sub, g.token_account_id)
    return _personal(jsonify(body), body["etag"])


@bp.post("/users:batch-read")
@client_token_required("partner:read")
def batch_read():
    body = _json_body()
    subs = body.get("subs") if isinstance(body, dict) else None
    return _personal(jsonify(reads.batch_read(g.client, subs, g.token_account_id)))


@bp.post("/users:lookup")
@client_token_required("partner:lookup")
def lookup_user():
    return _personal(jsonify(sub=lookup.lookup(g.client, _json_body())))


def _register_rate_limit() -> str:
    return current_app.config["TESSERA_PARTNER_REGISTER_RATE_LIMIT"]


@bp.post("/users")
@client_token_required("partner:register", rate_limit=_register_rate_limit)
def register_user():
    sub = lookup.register(g.client, _json_body())
    response = _personal(jsonify(sub=sub))
    response.status_code = 201
    response.headers["Location"] = url_for("partners.read_user", sub=sub)
    return response


@bp.patch("/users/<sub>")
@client_token_required("partner:write")
def patch_user(sub: str):
    body = writes.patch_user(g.client, sub, g.token_account_id, _json_body(), request.headers.get("If-Match"),
                             token_level=g.token_level)
    return _personal(jsonify(body), body["etag"])


@bp.get("/users/<sub>/addresses")
@client_token_required("partner:read")
def list_addresses(sub: str):
    return _personal(jsonify(addresses=addresses.list_addresses(g.client, sub, g.token_account_id)))


@bp.post("/users/<sub>/addresses")
@client_token_required("partner:write")
def add_address(sub: str):
    entry = addresses.add_address(g.client, sub, g.token_account_id, _json_body(), token_level=g.token_level)
    response = _personal(jsonify(entry), entry["etag"])
    response.status_code = 201
    response.headers["Location"] = url_for("partners.list_addresses", sub=sub) + "/" + entry["id"]
    return response


@bp.put("/users/<sub>/addresses/<address_id>")
@client_token_required("partner:write")
def replace_address(sub: str, address_id: str):
    entry = addresses.replace_address(g.client, sub, g.token_account_id, address_id, _json_body(),
                                      request.headers.get("If-Match"), token_level=g.token_level)
    return _personal(jsonify(entry), entry["etag"])


@bp.delete("/users/<sub>/addresses/<address_id>")
@client_token_required("partner:write")
def delete_address(sub: str, address_id: str):
    addresses.delete_address(g.client, sub, g.token_account_id, address_id, request.headers.get("If-Match"),
                             token_level=g.token_level)
    return "", 204


@bp.get("/changes")
@client_token_required("partner:read")
def list_changes():
    cursor, limit = request.args.get("cursor", "0"), request.args.get("limit", "100")
    if not CURSOR_RE.match(cursor) or int(cursor) > MAX_CURSOR:
        raise PartnerError(400, "invalid_cursor", "Invalid cursor", "cursor is the next_cursor of an earlier answer")
    if not limit.isascii() or not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise PartnerError(400, "invalid_request", "Invalid request", "limit is an integer from 1 to 500")
    contract = people.require_contract(g.client)
    changes, next_cursor = changes_since(g.client, contract, int(cursor), int(limit), g.token_account_id)
    return _personal(jsonify(changes=changes, next_cursor=str(next_cursor)))


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    """Anything else under /api is a problem too, never an HTML page."""
    return problem(404, "Not found", "no such endpoint of the partner API", reason="not_found")
