"""The partner API's contract: an OpenAPI 3.1 document, served at /api/openapi.json and checked
against the running API by schemathesis in the test suite."""

from __future__ import annotations

from app.accounts.models import PROFILE_CLAIMS
from app.partners.reads import ENTRY_FIELDS, MAX_BATCH

NULLABLE_STRING = {"type": ["string", "null"]}
SUB = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
ADDRESS_VALUE = {"type": "object", "additionalProperties": False,
                 "properties": {f: {"type": "string", "maxLength": 500} for f in ENTRY_FIELDS[1:]}}

# Reason codes, per status: the stable "reason" member of each problem.
REASONS = {
    400: ["invalid_request", "invalid_cursor"],
    401: ["token_missing", "token_invalid"],
    403: ["insufficient_scope", "no_contract", "claim_not_readable", "claim_not_writable", "registration_disabled"],
    404: ["user_not_found", "address_not_found", "unknown_subject", "not_found"],
    409: ["already_registered"],
    412: ["etag_mismatch"],
    413: ["body_too_large"],
    422: ["invalid_value", "unknown_claim", "use_addresses_resource", "invalid_phone", "invalid_phone_hash",
          "too_many_addresses"],
    428: ["if_match_required"],
    429: ["rate_limited"],
    503: ["account_busy"],
}
#: Only writes give it: RFC 9470 3, under a contract with ``write_acr`` (app.partners.contracts).
STEP_UP_REASON = "insufficient_user_authentication"
WRITE_REASONS = {**REASONS, 401: [*REASONS[401], STEP_UP_REASON]}
DESCRIPTIONS = {
    400: "Malformed request", 401: "No valid bearer token", 403: "Not allowed (scope, contract, policy)",
    404: "Unknown, not related to this client or its tenant, or not shared with it (one answer for all)",
    409: "Conflict (register-on-write: the number has an account, whoever holds it)",
    412: "The ETag in If-Match is no longer current", 413: "Body larger than MAX_CONTENT_LENGTH", 422: "Invalid value",
    428: "If-Match is required",
    429: "Rate limit of this client exceeded", 503: "The account is being merged: retry shortly",
}


def problem_answer(status: int, descriptions: dict, reasons: dict) -> dict:
    """An RFC 9457 problem answer of a JSON API's document (the partner and the sync API)."""
    return {"description": descriptions[status] + " (reasons: " + ", ".join(reasons[status]) + ")",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def problem_schema(reasons: dict) -> dict:
    """The Problem schema of a JSON API's document: RFC 9457 members and the API's ``reason``s."""
    return {
        "type": "object", "required": ["type", "title", "status", "detail", "reason"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"},
                       "reason": {"type": "string", "enum": sorted({r for rs in reasons.values() for r in rs})}},
    }


def _problem(status: int, write: bool = False) -> dict:
    answer = problem_answer(status, DESCRIPTIONS, WRITE_REASONS if write else REASONS)
    if write and status == 401:
        answer["description"] += (f"; {STEP_UP_REASON}: the contract's write_acr needs a token on the person's "
                                  "behalf whose authentication reaches acr_values (RFC 9470)")
        challenge = ("the bearer challenge (RFC 6750 3); with insufficient_user_authentication: Bearer "
                     'error="insufficient_user_authentication", error_description="…", acr_values="<acr>" (RFC 9470 3)')
        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": challenge}}
    return answer


def _errors(*statuses: int, write: bool = False) -> dict:
    # 400: any request may be malformed
    return {str(s): _problem(s, write) for s in sorted({400, 401, 429, *statuses})}


def _problem_schema() -> dict:
    schema = problem_schema(WRITE_REASONS)
    schema["properties"]["acr_values"] = {
        "type": "string", "description": f"with {STEP_UP_REASON}: the acr the person must authenticate at"}
    return schema


def _json(schema: dict, description: str, etag: bool = False) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if etag:
        response["headers"] = {"ETag": {"schema": {"type": "string"}, "description": "Send it back in If-Match to change this"}}
    return response


def _body(schema: dict, media: str = "application/json") -> dict:
    return {"required": True, "content": {media: {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SUB_PARAM = {"name": "sub", "in": "path", "required": True, "schema": SUB,
             "description": "The subject this client knows the person by"}
ADDRESS_PARAM = {"name": "address_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
            "description": "The ETag of what is changed (RFC 9110 13.1.1)"}


def _schemas() -> dict:
    claim_properties = {c: NULLABLE_STRING for c in PROFILE_CLAIMS}
    claim_properties.update({
        "address": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "addresses": {"type": "array", "items": _ref("Address")},
        "phone_number": NULLABLE_STRING, "email": NULLABLE_STRING,
        "phone_number_verified": {"type": "boolean"}, "email_verified": {"type": "boolean"},
        "attributes": {"type": "object", "additionalProperties": _ref("AttributeValue")},
    })
    patch_properties = {c: {"type": ["string", "null"], "maxLength": 100} for c in PROFILE_CLAIMS}
    patch_properties["address"] = {**ADDRESS_VALUE, "type": ["object", "null"]}
    patch_properties["attributes"] = {"type": "object", "minProperties": 1, "maxProperties": 10,
                                      "propertyNames": {"pattern": "^[A-Za-z0-9_-]{1,64}$"},
                                      "additionalProperties": _ref("AttributeValue")}
    user = {
        "type": "object", "required": ["sub", "claims", "provenance", "etag"],
        "properties": {
            "sub": {"type": "string"},
            "claims": {"type": "object", "properties": claim_properties, "additionalProperties": False,
                       "description": "The claims of this client's read contract (null: unset)"},
            "provenance": {"type": "object", "additionalProperties": _ref("Provenance"),
                           "description": "Who wrote each value and when, by claim name (attributes.<name> for attributes)"},
            "etag": {"type": "string"},
        },
    }
    return {
        "Problem": _problem_schema(),
        "Provenance": {
            "type": "object", "required": ["source", "client_id", "at"],
            "properties": {"source": {"type": "string", "enum": ["partner", "self", "registration", "hub"]},
                           "client_id": NULLABLE_STRING, "at": {"type": ["string", "null"], "format": "date-time"}},
        },
        "AttributeValue": {"type": ["string", "number", "boolean", "null"], "maxLength": 1000},
        "AddressInput": {**ADDRESS_VALUE, "minProperties": 1,
                         "properties": {**ADDRESS_VALUE["properties"], "label": {"type": "string", "maxLength": 64}}},
        "Address": {
            "type": "object", "required": ["id", "etag", "provenance"],
            "properties": {"id": {"type": "string"}, "etag": {"type": "string"}, "provenance": _ref("Provenance"),
                           **{f: NULLABLE_STRING for f in ENTRY_FIELDS}},
        },
        "User": user,
        "BatchUser": {**user, "required": [*user["required"], "requested_sub"],
                      "properties": {**user["properties"], "requested_sub": {"type": "string"}}},
        "UserPatch": {"type": "object", "minProperties": 1, "additionalProperties": False,
                      "properties": patch_properties,
                      "description": "JSON merge patch (RFC 7396) of claims in the write contract; null clears"},
        "Sub": {"type": "object", "required": ["sub"], "properties": {"sub": {"type": "string"}}},
    }


def openapi_document(issuer: str) -> dict:
    user_ops = {
        "get": {
            "operationId": "readUser", "summary": "Read a person's shared claims (one-way)", "tags": ["users"],
            "security": [{"partner": ["partner:read"]}], "parameters": [SUB_PARAM],
            "responses": {"200": _json(_ref("User"), "The claims of the read contract, with provenance", etag=True),
                          **_errors(403, 404)},
        },
        "patch": {
            "operationId": "patchUser", "summary": "Change claims of the write contract (two-way)", "tags": ["users"],
            "security": [{"partner": ["partner:write"]}], "parameters": [SUB_PARAM, IF_MATCH],
            "requestBody": {"required": True, "content": {
                "application/merge-patch+json": {"schema": _ref("UserPatch")},
                "application/json": {"schema": _ref("UserPatch")}}},
            "responses": {"200": _json(_ref("User"), "The person after the change", etag=True),
                          **_errors(400, 403, 404, 412, 413, 422, 428, 503, write=True)},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera partner data API", "version": "1.0.0",
                 "description": "Read (one-way) and write (two-way) the data a person shares with a client, "
                                "under the client's data contract and the person's consent. Every error is an "
                                "RFC 9457 problem with a stable `reason`. See docs/flows/partner-api.md."},
        "servers": [{"url": issuer.rstrip("/")}],
        "components": {
            "securitySchemes": {"partner": {"type": "oauth2", "flows": {"clientCredentials": {
                "tokenUrl": issuer.rstrip("/") + "/token",
                "scopes": {"partner:read": "read people's shared claims", "partner:write": "write them",
                           "partner:lookup": "find a person by a shared identifier; subject mapping",
                           "partner:register": "register a phone number that has no account"}}}}},
            "schemas": _schemas(),
        },
        "paths": {
            "/api/users/{sub}": user_ops,
            "/api/users:batch-read": {"post": {
                "operationId": "batchReadUsers", "summary": f"Read up to {MAX_BATCH} people", "tags": ["users"],
                "security": [{"partner": ["partner:read"]}],
                "requestBody": _body({"type": "object", "required": ["subs"], "additionalProperties": False,
                                      "properties": {"subs": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                                              "items": SUB}}}),
                "responses": {"200": _json({
                    "type": "object", "required": ["users", "not_found"],
                    "properties": {"users": {"type": "array", "items": _ref("BatchUser")},
                                   "not_found": {"type": "array", "items": {"type": "string"}}}},
                    "The people found (not_found: unknown or not shared, one list for both)"),
                    **_errors(400, 403, 413)},
            }},
            "/api/users:lookup": {"post": {
                "operationId": "lookupUser", "summary": "The sub of the person a shared identifier names",
                "tags": ["users"], "security": [{"partner": ["partner:lookup"]}],
                "requestBody": _body({"oneOf": [
                    {"type": "object", "required": ["phone"], "additionalProperties": False,
                     "properties": {"phone": {"type": "string", "maxLength": 32}}},
                    {"type": "object", "required": ["phone_hash"], "additionalProperties": False,
                     "properties": {"phone_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                                                   "description": "hex SHA-256 of the contract's salt followed by the E.164 number"}}},
                ]}),
                "responses": {"200": _json(_ref("Sub"), "The sub this client sees"), **_errors(400, 403, 404, 413, 422)},
            }},
            "/api/users": {"post": {
                "operationId": "registerUser", "summary": "Register-on-write: create the account of an unregistered phone",
                "tags": ["users"], "security": [{"partner": ["partner:register"]}],
                "requestBody": _body({"type": "object", "required": ["phone"], "additionalProperties": False,
                                      "properties": {"phone": {"type": "string", "maxLength": 32}}}),
                "responses": {"201": {**_json(_ref("Sub"), "The new account's sub for this client"),
                                      "headers": {"Location": {"schema": {"type": "string"}}}},
                              **_errors(400, 403, 409, 413, 422)},
            }},
            "/api/users/{sub}/addresses": {
                "get": {
                    "operationId": "listAddresses", "summary": "The person's address book", "tags": ["addresses"],
                    "security": [{"partner": ["partner:read"]}], "parameters": [SUB_PARAM],
                    "responses": {"200": _json({"type": "object", "required": ["addresses"], "properties": {
                        "addresses": {"type": "array", "items": _ref("Address")}}}, "Every entry, with its ETag"),
                        **_errors(403, 404)},
                },
                "post": {
                    "operationId": "addAddress", "summary": "Add an entry", "tags": ["addresses"],
                    "security": [{"partner": ["partner:write"]}], "parameters": [SUB_PARAM],
                    "requestBody": _body(_ref("AddressInput")),
                    "responses": {"201": _json(_ref("Address"), "The new entry", etag=True),
                                  **_errors(400, 403, 404, 413, 422, 503, write=True)},
                },
            },
            "/api/users/{sub}/addresses/{address_id}": {
                "put": {
                    "operationId": "replaceAddress", "summary": "Replace an entry (If-Match: the entry's ETag)",
                    "tags": ["addresses"], "security": [{"partner": ["partner:write"]}],
                    "parameters": [SUB_PARAM, ADDRESS_PARAM, IF_MATCH], "requestBody": _body(_ref("AddressInput")),
                    "responses": {"200": _json(_ref("Address"), "The entry after the change", etag=True),
                                  **_errors(400, 403, 404, 412, 413, 422, 428, 503, write=True)},
                },
                "delete": {
                    "operationId": "deleteAddress", "summary": "Remove an entry (If-Match: the entry's ETag)",
                    "tags": ["addresses"], "security": [{"partner": ["partner:write"]}],
                    "parameters": [SUB_PARAM, ADDRESS_PARAM, IF_MATCH],
                    "responses": {"204": {"description": "Removed"},
                                  **_errors(403, 404, 412, 428, 503, write=True)},
                },
            },
            "/api/changes": {"get": {
                "operationId": "listChanges", "summary": "Changes to readable claims of people this client may see",
                "tags": ["changes"], "security": [{"partner": ["partner:read"]}],
                "parameters": [
                    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                     "description": "next_cursor of the previous answer (absent: from the start)"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                ],
                "responses": {"200": _json({
                    "type": "object", "required": ["changes", "next_cursor"],
                    "properties": {
                        "changes": {"type": "array", "items": {
                            "type": "object", "required": ["cursor", "sub", "claims", "at"],
                            "properties": {"cursor": {"type": "string"}, "sub": {"type": "string"},
                                           "claims": {"type": "array", "items": {"type": "string"}},
                                           "at": {"type": "string", "format": "date-time"}}}},
                        "next_cursor": {"type": "string"}}}, "Changes in order, and where to continue"),
                    **_errors(400, 403)},
            }},
            "/api/subjects/{sub}": {"get": {
                "operationId": "subjectStatus", "summary": "What became of a subject: active, merged or closed",
                "tags": ["subjects"], "security": [{"partner": ["partner:lookup"]}], "parameters": [SUB_PARAM],
                "responses": {"200": _json({
                    "type": "object", "required": ["sub", "status"],
                    "properties": {"sub": {"type": "string"},
                                   "status": {"type": "string", "enum": ["active", "merged", "closed"]},
                                   "current_sub": {"type": "string"}}}, "The subject's status"),
                    **_errors(403, 404)},
            }},
        },
    }
