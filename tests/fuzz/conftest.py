"""Fixtures of the fuzz suite: a partner client that may do everything, a sync client of a tenant,
a registered relying party and a person — real rows, real tokens, so generated requests reach
the code behind authentication and not only its refusals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import ISSUER
from tests.partners.conftest import ALL_SCOPES, partners  # noqa: F401  (the fixture, reused)
from tests.rp import RelyingParty


@pytest.fixture
def partner_api(app, factories, partners):  # noqa: F811
    """A partner with every scope and a two-way contract, a person who shares with it (its sub),
    and one address in the person's book."""
    from app.tenants.service import set_policy

    partner = partners.make(read="name,nickname,picture,addresses,phone_number,attributes.*",
                            write="nickname,addresses,attributes.*")
    with app.app_context():
        set_policy(partner.tenant, allow_partner_registration=True)
    person = factories.account(nickname="fuzzed")
    sub = partners.share(partner, person.id)
    headers = partner.headers(ALL_SCOPES)
    return SimpleNamespace(partner=partner, sub=sub, headers=headers, person=person)


@pytest.fixture
def sync_api(factories, http):
    """A legacy system's sync client of its tenant (scope sync:write) and its bearer headers."""
    tenant = factories.tenant()
    client = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope="sync:write")
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    token = rp.token_request({"grant_type": "client_credentials", "scope": "sync:write"}).get_json()["access_token"]
    return SimpleNamespace(tenant=tenant, client=client, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def relying_party(factories, http):
    """A confidential client with a registered redirect URI (client_secret_basic)."""
    client = factories.client(grant_types=["authorization_code", "refresh_token", "client_credentials"],
                              scope="openid profile email phone offline_access")
    return RelyingParty.for_client(http, ISSUER, client)
