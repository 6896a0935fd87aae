"""Admin API callers: tokens issued by the hub itself — client credentials with an admin scope,
or a person's token with the ``admin`` scope from the code flow with PKCE (the console's way)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from

SCOPE_OF = {"super": "admin:super", "tenant_admin": "admin:tenant", "support": "admin:support", "auditor": "admin:audit"}


@dataclass
class Caller:
    token: str
    tenant: str | None = None
    account_id: int | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


class Admins:
    def __init__(self, app, http, factories):
        self.app, self.http, self.factories = app, http, factories

    def client_token(self, role: str, tenant: str | None = None, scope: str | None = None) -> Caller:
        """A client of ``tenant`` registered with the role's admin scope, and its client-credentials token."""
        tenant = tenant or self.factories.tenant()
        scope = scope or SCOPE_OF[role]
        client = self.factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope=scope)
        basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
        answer = self.http.post("/token", data={"grant_type": "client_credentials", "scope": scope},
                                headers={"Authorization": f"Basic {basic}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return Caller(answer.get_json()["access_token"], tenant)

    def person_token(self, role: str | None, tenant: str | None = None) -> Caller:
        """A person (with ``role``, or none) logged in through the code flow with PKCE at a trusted
        public client allowed the ``admin`` scope; their access token."""
        from app.admin.roles import grant_role

        console_tenant = self.factories.tenant()
        client = self.factories.client(tenant=console_tenant, public=True, trusted=True,
                                       redirect_uri="http://127.0.0.1/admin/callback", scope="openid admin")
        person = self.factories.account()
        if role is not None:
            with self.app.app_context():
                grant_role(person.id, role, tenant=tenant, actor="operator:test")
        browser = Browser(self.app.test_client(), ISSUER)
        rp = RelyingParty(browser.http, ISSUER, client.client_id, None, client.redirect_uri, auth_method="none")
        request, response = authorize(browser, rp, person, scope="openid admin")
        tokens = rp.exchange(code_from(response, request), request).get_json()
        assert "access_token" in tokens, tokens
        return Caller(tokens["access_token"], tenant, person.id)


@pytest.fixture
def admins(app, http, factories):
    return Admins(app, http, factories)
