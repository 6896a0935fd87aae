"""The admin API's contract: an OpenAPI 3.1 document served at /api/admin/v1/openapi.json and
checked against the running API by schemathesis in the test suite (no 5xx; statuses, content
types and bodies as documented). Built from ``OPERATIONS``: one row per operation."""

from __future__ import annotations

from app.oidc.assurance import ACR_VALUES_SUPPORTED
from app.partners.openapi import problem_answer, problem_schema

BASE = "/api/admin/v1"
S, N, B, I = {"type": "string"}, {"type": ["string", "null"]}, {"type": "boolean"}, {"type": "integer"}
TIME, TIME_N = {"type": "string", "format": "date-time"}, {"type": ["string", "null"], "format": "date-time"}

REASONS = {
    400: ["invalid_request", "invalid_cursor"],
    401: ["token_missing", "token_invalid"],
    403: ["insufficient_scope", "not_an_admin", "forbidden"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    409: ["conflict"],
    412: ["precondition_failed"],
    413: ["body_too_large"],
    428: ["precondition_required"],
    429: ["rate_limited"],
    503: ["account_busy"],
}
DESCRIPTIONS = {
    400: "Malformed request", 401: "No valid bearer token", 403: "Not allowed to this role or token",
    404: "Unknown, or outside the caller's reach (one answer for both)", 405: "Method not allowed",
    409: "Conflicts with the resource's state", 412: "If-Match names a stale ETag", 413: "Body too large",
    428: "If-Match is required", 429: "Rate limit of this caller exceeded",
    503: "The account is being merged: retry shortly",
}


def _obj(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict:
    return _obj(["items", "next_cursor"], items={"type": "array", "items": _ref(item)}, next_cursor=N)


SCHEMAS = {
    "Principal": _obj(["actor", "role", "tenant_id"], actor=S, role={"enum": ["super", "tenant_admin", "support", "auditor"]},
                      tenant_id={"type": ["integer", "null"]}, account_id={"type": ["integer", "null"]}),
    "Tenant": _obj(["id", "slug", "name", "branding", "policy", "created_at", "clients"], id=I, slug=S, name=S,
                   branding={"type": "object"}, policy={"type": "object"}, created_at=TIME, clients=I),
    "Client": _obj(["client_id", "client_name", "tenant", "redirect_uris", "scope", "disabled", "has_secret"],
                   client_id=S, client_name=S, tenant=S, redirect_uris={"type": "array", "items": S}, scope=S,
                   disabled=B, has_secret=B, live_tokens=I, created_at=TIME_N, client_secret=N,
                   previous_secret_expires_at=TIME_N),
    "Contract": _obj(["client_id", "read", "write", "subscribe", "token_exchange"], client_id=S,
                     read={"type": "array", "items": S}, write={"type": "array", "items": S}, subscribe=B,
                     token_exchange=B, events_endpoint=N, write_acr=N),
    "UserSummary": _obj(["id", "status", "identities"], id=I, status=S, name=N,
                        identities={"type": "array", "items": S}, created_at=TIME_N, last_login_at=TIME_N),
    "User": _obj(["id", "status", "identities", "sessions", "consents", "merges", "events"], id=I, status=S,
                 identities={"type": "array"}, sessions={"type": "array"}, consents={"type": "array"},
                 merges={"type": "array"}, events={"type": "array"}, can_log_in=B, has_password=B),
    "Session": _obj(["sid", "account_id", "created_at"], sid=S, account_id=I, created_at=TIME, ip_address=N,
                    user_agent=N),
    "AuditEvent": _obj(["id", "at", "kind", "account_id", "actor", "details"], id=I, at=TIME, kind=S,
                       account_id={"type": ["integer", "null"]}, actor=N, client=N, details={"type": "object"}),
    "Merge": _obj(["id", "survivor", "absorbed", "status", "origin"], id=I, survivor=I, absorbed=I, status=S,
                  origin=S, step=S, last_error=N, report={"type": "object"}),
    "Delivery": _obj(["id", "kind", "client", "status", "failing", "attempts"], id=I, kind=S, client=N, status=S,
                     failing=B, attempts=I, last_error=N),
    "Key": _obj(["kid", "alg", "state"], kid=S, alg=S, state=S, created_at=TIME_N),
    "Upstream": _obj(["slug", "name", "kind", "enabled"], slug=S, name=S, kind=S, enabled=B, has_client_secret=B),
    "Preview": {"type": "object"},
    "Export": {"type": "object"},
    "Removed": _obj(["removed"], removed={"type": "object"}),
    "TenantDeleted": _obj(["deleted"], deleted={"type": "object"}),
    "Import": _obj(["id", "tenant", "status"], id=I, tenant=S, status=S),
    "PasswordReset": _obj(["user", "password", "sessions_ended", "tokens_revoked"], user=_ref("UserSummary"),
                          password=N, sessions_ended=I, tokens_revoked=I),
    "Revocation": _obj(["user", "client", "consents_removed", "tokens_revoked"], user=_ref("UserSummary"), client=N,
                       consents_removed=I, tokens_revoked=I),
    "Closure": _obj(["user", "sessions_ended", "tokens_revoked", "consents_removed"], user=_ref("UserSummary"),
                    sessions_ended=I, tokens_revoked=I, consents_removed=I),
    "Count": _obj(["sessions_ended"], sessions_ended=I),
    "Deleted": _obj(["client_id", "deleted"], client_id=S, deleted={"type": "object"}),
}
for _name in ("Tenant", "Client", "UserSummary", "Session", "AuditEvent", "Merge", "Delivery", "Key", "Upstream", "Import"):
    SCHEMAS[_name + "Page"] = _page(_name)

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
CURSOR = {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"}
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": S,
            "description": "The ETag of the resource as read"}


def _q(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "schema": schema or S}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or S}


TENANT_BODY = _obj(["slug", "name"], slug=S, name=S, branding={"type": "object"}, policy={"type": "object"})
TENANT_PATCH = {"type": "object", "properties": {"name": S, "branding": {"type": "object"}, "policy": {"type": "object"}}}
CLIENT_BODY = _obj(["tenant", "client_name"], tenant=S, client_name=S, redirect_uris={"type": "array", "items": S},
                   token_endpoint_auth_method=S, grant_types={"type": "array", "items": S}, scope=S, trusted=B)
CLIENT_PATCH = {"type": "object", "properties": {
    "client_name": S, "redirect_uris": {"type": "array", "items": S},
    "post_logout_redirect_uris": {"type": "array", "items": S}, "backchannel_logout_uri": N,
    "frontchannel_logout_uri": N, "events_endpoint": N, "scope": S, "trusted": B,
    "default_acr_values": {"type": "array", "items": S}}}
CONTRACT_BODY = {"type": "object", "properties": {"read": {"type": "array", "items": S},
                                                  "write": {"type": "array", "items": S}, "subscribe": B,
                                                  "token_exchange": B,
                                                  "write_acr": {"type": ["string", "null"],
                                                                "enum": [*ACR_VALUES_SUPPORTED, None]}}}
MERGE_BODY = _obj(["survivor", "absorbed", "reason"], survivor={"type": "integer", "minimum": 1},
                  absorbed={"type": "integer", "minimum": 1}, reason=S, regrant_consents=B)
PREVIEW_BODY = _obj(["survivor", "absorbed"], survivor={"type": "integer", "minimum": 1},
                    absorbed={"type": "integer", "minimum": 1})
RESET_BODY = {"type": "object", "properties": {"password": S, "generate": B}}
REVOKE_BODY = {"type": "object", "properties": {"client": S}}
RETIRE_BODY = {"type": "object", "properties": {"now": B}}
UPSTREAM_PATCH = {"type": "object", "properties": {"name": S, "client_id": S, "client_secret": S, "scope": S,
                                                   "claim_mapping": {"type": "object"}, "matching_mode": S}}
UPSTREAM_BODY = _obj(["slug", "name", "client_id"], slug=S, name=S, client_id=S, client_secret=S, discovery_url=S,
                     authorization_endpoint=S, token_endpoint=S, userinfo_endpoint=S, scope=S,
                     claim_mapping={"type": "object"}, matching_mode=S)
LOCK_BODY = _obj(["reason"], reason=S)
ROTATE_BODY = {"type": "object", "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 2592000}}}

# (method, path, operationId, summary, parameters, request body schema, 2xx status, answer schema, error statuses, etag)
OPERATIONS = [
    ("get", "/me", "whoAmI", "The caller: actor, role and reach", [], None, 200, "Principal", (), False),
    ("get", "/tenants", "listTenants", "Tenants in reach", [LIMIT, CURSOR], None, 200, "TenantPage", (403,), False),
    ("post", "/tenants", "createTenant", "Create a tenant (super admin)", [], TENANT_BODY, 201, "Tenant", (403, 409), True),
    ("get", "/tenants/{slug}", "showTenant", "One tenant", [_path("slug")], None, 200, "Tenant", (403, 404), True),
    ("patch", "/tenants/{slug}", "updateTenant", "Change a tenant's name, branding or policy",
     [_path("slug"), IF_MATCH], TENANT_PATCH, 200, "Tenant", (403, 404, 412, 428), True),
    ("delete", "/tenants/{slug}", "deleteTenant", "Delete a tenant nothing refers to", [_path("slug")], None, 200,
     "TenantDeleted", (403, 404, 409), False),
    ("get", "/clients", "listClients", "Clients in reach (by tenant, by a part of id or name)",
     [LIMIT, CURSOR, _q("tenant"), _q("q")], None, 200, "ClientPage", (403,), False),
    ("post", "/clients", "createClient", "Register a client (its secret is in the answer, once)", [], CLIENT_BODY, 201,
     "Client", (403, 404), False),
    ("get", "/clients/{client_id}", "showClient", "One client", [_path("client_id")], None, 200, "Client", (403, 404), True),
    ("patch", "/clients/{client_id}", "updateClient", "Change a client's metadata and redirect URIs",
     [_path("client_id"), IF_MATCH], CLIENT_PATCH, 200, "Client", (403, 404, 412, 428), True),
    ("delete", "/clients/{client_id}", "deleteClient", "Delete a client (force: with its live tokens)",
     [_path("client_id"), _q("force", {"enum": ["true", "false"]})], None, 200, "Deleted", (403, 404), False),
    ("post", "/clients/{client_id}/disable", "disableClient", "Refuse the client everywhere", [_path("client_id")], None,
     200, "Client", (403, 404), True),
    ("post", "/clients/{client_id}/enable", "enableClient", "Accept the client again", [_path("client_id")], None, 200,
     "Client", (403, 404), True),
    ("post", "/clients/{client_id}/rotate-secret", "rotateClientSecret",
     "A new secret (in the answer, once); the old one valid for grace_seconds", [_path("client_id")], ROTATE_BODY, 200,
     "Client", (403, 404), False),
    ("get", "/clients/{client_id}/contract", "showContract", "The client's data contract and event subscription",
     [_path("client_id")], None, 200, "Contract", (403, 404), True),
    ("put", "/clients/{client_id}/contract", "setContract", "Replace the client's data contract",
     [_path("client_id"), IF_MATCH], CONTRACT_BODY, 200, "Contract", (403, 404, 412, 428), True),
    ("get", "/users", "searchUsers", "Find people (one of phone, email, username+tenant, name, sub+client, "
     "legacy_id+tenant; none: every person in reach, paged)",
     [LIMIT, CURSOR, *(_q(n) for n in ("phone", "email", "username", "tenant", "name", "sub", "client", "legacy_id"))],
     None, 200, "UserSummaryPage", (403,), False),
    ("get", "/users/{user_id}", "showUser", "A person: identities, sessions, consents, merges, audit trail",
     [_path("user_id")], None, 200, "User", (403, 404), False),
    ("post", "/users/{user_id}/lock", "lockUser", "Lock a person (sessions end)", [_path("user_id")], LOCK_BODY, 200,
     "UserSummary", (403, 404, 409, 503), False),
    ("post", "/users/{user_id}/unlock", "unlockUser", "Unlock a person who has a way to log in", [_path("user_id")], None,
     200, "UserSummary", (403, 404, 409, 503), False),
    ("post", "/users/{user_id}/reset-password", "resetPassword",
     "A new password (given, or generated and in the answer once); sessions and tokens end; the person is told",
     [_path("user_id")], RESET_BODY, 200, "PasswordReset", (403, 404, 409, 503), False),
    ("post", "/users/{user_id}/reset-mfa", "resetSecondFactors", "Remove every second factor of the person",
     [_path("user_id")], None, 200, "Removed", (403, 404, 409, 503), False),
    ("post", "/users/{user_id}/revoke", "revokeUserAccess", "Delete consents and revoke tokens (all clients, or one)",
     [_path("user_id")], REVOKE_BODY, 200, "Revocation", (403, 404, 409, 503), False),
    ("post", "/users/{user_id}/close", "closeUser", "Close the account (identities kept for the cooling-off)",
     [_path("user_id")], LOCK_BODY, 200, "Closure", (403, 404, 409, 503), False),
    ("get", "/users/{user_id}/export", "exportUser", "The person's data, without secrets", [_path("user_id")], None,
     200, "Export", (403, 404), False),
    ("get", "/users/{user_id}/sessions", "listUserSessions", "A person's live sessions",
     [_path("user_id"), LIMIT, CURSOR], None, 200, "SessionPage", (403, 404), False),
    ("delete", "/users/{user_id}/sessions", "endUserSessions", "End every session of a person (sites told)",
     [_path("user_id")], None, 200, "Count", (403, 404), False),
    ("get", "/sessions", "listSessions", "Live sessions of the people in reach, newest first",
     [LIMIT, CURSOR, _q("user", {"type": "integer", "minimum": 1})], None, 200, "SessionPage", (403,), False),
    ("delete", "/sessions/{sid}", "endSession", "End one session", [_path("sid")], None, 200, "Count", (403, 404), False),
    ("get", "/audit", "searchAudit", "Audit events, newest first",
     [LIMIT, CURSOR, _q("user", {"type": "integer", "minimum": 1}), _q("client"), _q("kind"), _q("actor"),
      _q("since", {"type": "string", "format": "date-time"}), _q("until", {"type": "string", "format": "date-time"})],
     None, 200, "AuditEventPage", (403, 404), False),
    ("get", "/merges", "listMerges", "Merges, newest first",
     [LIMIT, CURSOR, _q("status", {"enum": ["pending", "running", "completed", "failed", "cancelled"]}),
      _q("user", {"type": "integer", "minimum": 1})], None, 200, "MergePage", (403,), False),
    ("post", "/merges", "createMerge", "An operator's merge of two accounts of one person", [],
     MERGE_BODY, 201, "Merge", (403, 404, 409, 503), False),
    ("post", "/merges/preview", "previewMerge", "What a merge would do, without doing it", [], PREVIEW_BODY, 200,
     "Preview", (403, 404, 409), False),
    ("get", "/merges/{merge_id}", "showMerge", "One merge with its step and report", [_path("merge_id")], None, 200,
     "Merge", (403, 404), False),
    ("post", "/merges/{merge_id}/retry", "retryMerge", "Queue a failed merge again (resumed from its step)",
     [_path("merge_id")], None, 200, "Merge", (403, 404, 409, 503), False),
    ("post", "/merges/{merge_id}/cancel", "cancelMerge", "Cancel a pending merge", [_path("merge_id")], LOCK_BODY, 200,
     "Merge", (403, 404, 409, 503), False),
    ("get", "/deliveries", "listDeliveries", "The outbox: messages to clients, newest first",
     [LIMIT, CURSOR, _q("client"), _q("status", {"enum": ["pending", "failing", "delivered", "expired", "rejected"]})],
     None, 200, "DeliveryPage", (403,), False),
    ("post", "/deliveries/{delivery_id}/retry", "retryDelivery", "Send a pending message now",
     [_path("delivery_id")], None, 200, "Delivery", (403, 404, 409), False),
    ("get", "/keys", "listKeys", "Signing keys (public facts only)", [LIMIT, CURSOR], None, 200, "KeyPage", (403,), False),
    ("post", "/keys/rotate", "rotateKeys", "Rotate the signing keys", [], None, 200, "KeyPage", (403,), False),
    ("post", "/keys/{kid}/retire", "retireKey", "Take a key out of the JWKS (now: at once)", [_path("kid")],
     RETIRE_BODY, 200, "Key", (403, 404, 409), False),
    ("get", "/upstreams", "listUpstreams", "Upstream identity providers", [LIMIT, CURSOR], None, 200, "UpstreamPage",
     (403,), False),
    ("post", "/upstreams", "createUpstream", "Configure an upstream identity provider", [], UPSTREAM_BODY, 201,
     "Upstream", (403, 409), True),
    ("get", "/upstreams/{slug}", "showUpstream", "One upstream (never its secret)", [_path("slug")], None, 200,
     "Upstream", (403, 404), True),
    ("patch", "/upstreams/{slug}", "updateUpstream", "Change an upstream", [_path("slug"), IF_MATCH], UPSTREAM_PATCH,
     200, "Upstream", (403, 404, 409, 412, 428), True),
    ("post", "/upstreams/{slug}/disable", "disableUpstream", "No login with it (linked identities stay)",
     [_path("slug")], None, 200, "Upstream", (403, 404), True),
    ("post", "/upstreams/{slug}/enable", "enableUpstream", "Logins with it again", [_path("slug")], None, 200,
     "Upstream", (403, 404), True),
    ("get", "/imports", "listImports", "Import jobs (plans and runs) with their progress, newest first",
     [LIMIT, CURSOR, _q("tenant"), _q("status", {"enum": ["running", "completed", "failed"]})], None, 200,
     "ImportPage", (403,), False),
    ("get", "/imports/{job_id}", "showImport", "One import job: progress, conflicts by kind, the first conflicts",
     [_path("job_id"), _q("conflicts", {"type": "integer", "minimum": 0, "maximum": 1000})], None, 200, "Import",
     (403, 404), False),
]


def _operation(op_id, summary, params, request_body, status, schema, errors, etag, method) -> dict:
    operation = {"operationId": op_id, "summary": summary, "tags": [op_id], "parameters": params,
                 "security": [{"bearer": []}]}
    if request_body is not None:
        operation["requestBody"] = {"required": method != "post" or "rotate" not in op_id,
                                    "content": {"application/json": {"schema": request_body}}}
    ok = {"description": summary, "content": {"application/json": {"schema": _ref(schema)}}}
    if etag:
        ok["headers"] = {"ETag": {"schema": S}}
    statuses = {400, 401, 429, *errors}
    if request_body is not None:
        statuses.add(413)
    operation["responses"] = {str(status): ok, **{str(s): problem_answer(s, DESCRIPTIONS, REASONS) for s in sorted(statuses)}}
    return operation


def openapi_document(issuer: str) -> dict:
    paths: dict = {}
    for method, path, op_id, summary, params, request_body, status, schema, errors, etag in OPERATIONS:
        paths.setdefault(BASE + path, {})[method] = _operation(op_id, summary, params, request_body, status, schema,
                                                               errors, etag, method)
    paths[BASE + "/imports/{job_id}/conflicts"] = {"get": {
        "operationId": "downloadImportConflicts", "summary": "An import job's conflict report as JSON Lines",
        "tags": ["imports"], "security": [{"bearer": []}], "parameters": [_path("job_id")],
        "responses": {"200": {"description": "One conflict per line", "content": {"application/jsonl": {"schema": S}}},
                      **{str(s): problem_answer(s, DESCRIPTIONS, REASONS) for s in (400, 401, 403, 404, 429)}}}}
    paths[BASE + "/audit/export"] = {"get": {
        "operationId": "exportAudit", "summary": "Audit events as JSON Lines, oldest first", "tags": ["audit"],
        "security": [{"bearer": []}],
        "parameters": [_q("user", {"type": "integer", "minimum": 1}), _q("client"), _q("kind"), _q("actor"),
                       _q("since", {"type": "string", "format": "date-time"}),
                       _q("until", {"type": "string", "format": "date-time"})],
        "responses": {"200": {"description": "One event per line", "content": {"application/jsonl": {"schema": S}}},
                      **{str(s): problem_answer(s, DESCRIPTIONS, REASONS) for s in (400, 401, 403, 404, 429)}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera admin API", "version": "1.0.0",
                 "description": "Run the hub: tenants, clients, people, sessions, merges, deliveries, keys, "
                                "upstreams, audit. Bearer tokens issued by the hub (client credentials with an "
                                "admin scope, or a person's token with the admin scope and an admin role). Errors "
                                "are RFC 9457 problems with a stable `reason`. See docs/flows/admin-api.md."},
        "servers": [{"url": issuer.rstrip("/")}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, "Problem": problem_schema(REASONS)},
        },
    }
