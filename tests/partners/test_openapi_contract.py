"""schemathesis against /api/openapi.json, through the WSGI app: for every operation a few
generated requests (with a real token and a real, shared person), no 5xx, and every response's
status, content type and body as documented."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_api_keeps_its_openapi_contract(app, http, factories, partners):
    from app.tenants.service import set_policy

    partner = partners.make(read="name,nickname,picture,addresses,phone_number,attributes.*",
                            write="nickname,addresses,attributes.*")
    with app.app_context():
        set_policy(partner.tenant, allow_partner_registration=True)
    person = factories.account(nickname="fuzzed")
    sub = partners.share(partner, person.id)
    headers = partner.headers()
    http.post(f"/api/users/{sub}/addresses", json={"locality": "Shenzhen"}, headers=headers)

    schema = schemathesis.openapi.from_dict(http.get("/api/openapi.json").get_json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11
    # A partner whose contract needs loa:2 for writes, calling with a client-credentials token:
    # its writes get the step-up answer (RFC 9470), as documented too.
    demanding = partners.make(read="nickname,addresses", write="nickname,addresses", write_acr="urn:tessera:loa:2")
    demanding_sub = partners.share(demanding, person.id)
    writes = [o for o in operations if "partner:write" in str(o.definition.raw.get("security"))]
    assert sorted(o.definition.raw["operationId"] for o in writes) == [
        "addAddress", "deleteAddress", "patchUser", "replaceAddress"]
    runs = [(operations, headers, sub), (writes, demanding.headers(), demanding_sub)]
    for selected, caller, subject in runs:
        for operation in selected:
            _check(app, operation, caller, subject)


def _check(app, operation, headers: dict, sub: str) -> None:
    # Half the cases name the real person, so the success paths are exercised too.
    strategy = operation.as_strategy(path_parameters={"sub": sub}) if "{sub}" in operation.path \
        else operation.as_strategy()

    @given(case=strategy)
    @settings(max_examples=6, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(app=app, headers=headers, checks=CHECKS)

    check()
