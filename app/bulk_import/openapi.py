"""The sync API's contract: an OpenAPI 3.1 document, served at /api/sync/openapi.json and checked
against the running API by schemathesis in the test suite (tests/fuzz/test_openapi_fuzz.py).
docs/flows/sync-and-lazy-migration.md is the prose version."""

from __future__ import annotations

from app.accounts.models import PROFILE_CLAIMS
from app.bulk_import.records import MAX_LEGACY_ID
from app.partners.openapi import problem_answer, problem_schema

# The stable "reason" member of each problem, per status.
REASONS = {
    400: ["invalid_json", "invalid_record", "invalid_request"],
    401: ["token_missing", "token_invalid"],
    403: ["insufficient_scope", "wrong_tenant"],
    404: ["unknown_legacy_id"],
    409: ["stale", "deleted", "account_closed", "phone_conflict", "email_conflict", "username_conflict",
          "upstream_conflict", "concurrent_change", "conflict"],
    413: ["body_too_large"],
    429: ["rate_limited"],
    503: ["account_busy"],
}
DESCRIPTIONS = {
    400: "Malformed body or record", 401: "No valid bearer token", 403: "Not this client's tenant, or no sync:write",
    404: "No such legacy account in this tenant", 409: "Refused change (stale, deleted, an identifier held elsewhere)",
    413: "Body larger than MAX_CONTENT_LENGTH", 429: "Rate limit of this client exceeded",
    503: "The account is being merged: retry after Retry-After",
}

NULLABLE_STRING = {"type": ["string", "null"]}
TEXT = {"type": ["string", "number", "null"], "description": "text (a number is read as its digits)"}
BOOLEAN = {"type": ["boolean", "string", "null"], "description": "true/false, or 1/0, yes/no, t/f, y/n"}
TIMESTAMP = {"type": ["string", "null"], "description": "ISO 8601 (UTC when no offset is given)"}


def _problem(status: int) -> dict:
    return problem_answer(status, DESCRIPTIONS, REASONS)


def _errors(*statuses: int) -> dict:
    return {str(s): _problem(s) for s in sorted({400, 401, 403, 429, *statuses})}  # 400: any request may be malformed


def _state(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LegacyAccount"}}}}


def _schemas() -> dict:
    record = {
        "type": "object",
        "description": "An import record (docs/flows/import.md) plus version. Unknown fields are ignored.",
        "properties": {
            "legacy_id": {"type": ["string", "integer"], "description": "if present, the URL's"},
            "version": {"type": ["integer", "string", "null"], "minimum": 0,
                        "description": "increases at every change of the legacy account"},
            "updated_at": TIMESTAMP, "created_at": TIMESTAMP,
            "username": TEXT, "phone": TEXT, "phone_verified": BOOLEAN, "email": TEXT, "email_verified": BOOLEAN,
            "password_hash": TEXT, "password_format": TEXT,
            "upstreams": {"type": ["array", "string", "null"], "items": {
                "type": "object", "required": ["provider", "subject"],
                "properties": {"provider": {"type": "string"}, "subject": {"type": "string"},
                               "unionid": NULLABLE_STRING}}},
            "attributes": {"type": ["object", "string", "null"]},
            "address": {"type": ["object", "string", "null"]},
            **{claim: TEXT for claim in PROFILE_CLAIMS},
        },
    }
    state = {
        "type": "object",
        "required": ["result", "legacy_id", "status", "source", "version", "updated_at", "deleted_at",
                     "has_password", "identities", "profile", "attributes"],
        "properties": {
            "result": {"type": "string",
                       "enum": ["created", "linked", "updated", "unchanged", "deleted", "closed", "current"]},
            "legacy_id": {"type": "string"},
            "status": {"type": "string"},
            "source": {"type": "string", "enum": ["import", "sync", "lazy"]},
            "version": {"type": ["integer", "null"]},
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
            "deleted_at": {"type": ["string", "null"], "format": "date-time"},
            "has_password": {"type": "boolean"},
            "identities": {"type": "array", "items": {
                "type": "object", "required": ["kind", "value", "verified"],
                "properties": {"kind": {"type": "string"}, "value": {"type": "string"}, "verified": {"type": "boolean"},
                               "provider": {"type": "string"}}}},
            "profile": {"type": "object"},
            "attributes": {"type": "object"},
            "sub": {"type": "string", "description": "the subject this client sees (absent once closed)"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "Problem": problem_schema(REASONS),
        "Record": record,
        "LegacyAccount": state,
    }


def openapi_document(issuer: str) -> dict:
    base = issuer.rstrip("/")
    params = [
        {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The slug of the client's own tenant"},
        {"name": "legacy_id", "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LEGACY_ID},
         "description": "The account's id in the legacy system"},
    ]
    security = [{"sync": ["sync:write"]}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera sync API", "version": "1.0.0",
                 "description": "A legacy account system still in service pushes its accounts' creates, updates and "
                                "deletes (dual write). Every error is an RFC 9457 problem with a stable `reason`. "
                                "See docs/flows/sync-and-lazy-migration.md."},
        "servers": [{"url": base}],
        "components": {
            "securitySchemes": {"sync": {"type": "oauth2", "flows": {"clientCredentials": {
                "tokenUrl": base + "/token", "scopes": {"sync:write": "write the accounts of the client's tenant"}}}}},
            "schemas": _schemas(),
        },
        "paths": {"/api/sync/{tenant}/accounts/{legacy_id}": {
            "parameters": params,
            "put": {
                "operationId": "putAccount", "summary": "Create or update a legacy account", "security": security,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Record"}}}},
                "responses": {"200": _state("updated or unchanged"), "201": _state("created or linked"),
                              **_errors(400, 409, 413, 503)},
            },
            "delete": {
                "operationId": "deleteAccount", "summary": "The legacy system deleted the account", "security": security,
                "parameters": [
                    {"name": "version", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "updated_at", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _state("deleted, or closed when nothing else holds the account"),
                              **_errors(400, 404, 409, 503)},
            },
            "get": {
                "operationId": "getAccount", "summary": "What the hub holds for a legacy account", "security": security,
                "responses": {"200": _state("current"), **_errors(404)},
            },
        }},
    }
