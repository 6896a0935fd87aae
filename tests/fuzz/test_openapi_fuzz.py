"""schemathesis over every JSON API's OpenAPI document — the partner API (/api/openapi.json) and
the sync API (/api/sync/openapi.json) — with real tokens: for every operation, requests that fit
the document (positive) and requests that do not (negative). No answer is a 5xx, and every answer
(status, content type, body) is one the document declares.

tests/partners/test_openapi_contract.py keeps a few positive cases per partner operation with a
real, shared person; this is the wider net."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=25, suppress_health_check=list(HealthCheck))

#: A record the sync API takes (the success paths get their share of cases).
VALID_RECORD = {"username": "fuzzy", "email": "fuzzy@example.com", "email_verified": True, "name": "Fuzzy",
                "attributes": {"level": "gold"}, "version": 1}


def _operations(http, url: str, count: int):
    schema = schemathesis.openapi.from_dict(http.get(url).get_json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == count
    return operations


def _run(app, strategy, headers):
    @FUZZ
    @given(case=strategy)
    def check(case):
        case.call_and_validate(app=app, headers=headers, checks=CHECKS)

    check()


def test_partner_api_answers_every_generated_request_as_documented(app, http, partner_api):
    http.post(f"/api/users/{partner_api.sub}/addresses", json={"locality": "Shenzhen"}, headers=partner_api.headers)
    for operation in _operations(http, "/api/openapi.json", 11):
        fixed = {"sub": partner_api.sub} if "{sub}" in operation.path else None
        strategy = st.one_of(*(operation.as_strategy(mode, path_parameters=fixed) for mode in GenerationMode))
        _run(app, strategy, partner_api.headers)


def test_sync_api_answers_every_generated_request_as_documented(app, http, sync_api):
    operations = _operations(http, "/api/sync/openapi.json", 3)
    for operation in operations:
        own_tenant = {"tenant": sync_api.tenant}
        strategies = [operation.as_strategy(mode, path_parameters=own_tenant) for mode in GenerationMode]
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE))  # any tenant: 403 wrong_tenant
        if operation.method.upper() == "PUT":
            strategies.append(operation.as_strategy(path_parameters=own_tenant, body=VALID_RECORD))
        _run(app, st.one_of(*strategies), sync_api.headers)
