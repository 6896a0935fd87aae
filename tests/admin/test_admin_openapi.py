"""schemathesis against /api/admin/v1/openapi.json, through the WSGI app with a super admin's
token: for every operation a few generated requests (half of them naming real resources), no 5xx,
and every response's status, content type and body as documented."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_admin_api_keeps_its_openapi_contract(app, http, factories, admins):
    tenant = factories.tenant()
    client = factories.client(tenant=tenant)
    person = factories.account(name="张三")
    admin = admins.client_token("super")
    real = {"slug": tenant, "client_id": client.client_id, "user_id": str(person.id), "merge_id": "1",
            "sid": "x", "delivery_id": "1", "kid": "no-such-key", "job_id": "1"}

    document = http.get("/api/admin/v1/openapi.json").get_json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        strategy = operation.as_strategy(path_parameters={n: real[n] for n in names}) if names else operation.as_strategy()

        @given(case=strategy)
        @settings(max_examples=5, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(app=app, headers=admin.headers, checks=CHECKS)

        check()
