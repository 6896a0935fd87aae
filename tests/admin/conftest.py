"""Admin API callers: tokens issued by the hub itself — client credentials with an admin scope,
or a person's token with the ``admin`` scope from the code flow with PKCE (the console's way);
and admin console operators: people holding a role, logged in to /admin in their own browser."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from tests.conftest import ISSUER
from app.admin.console import ensure_console_client
from app.admin.roles import grant_role
from tests.rp import Browser, RelyingParty, authorize, code_from, csrf_token

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


# --- the admin console ---------------------------------------------------------------------------

@pytest.fixture
def console_client(app, factories):
    tenant = factories.tenant()
    with app.app_context():
        client_id, changed = ensure_console_client(tenant, actor="operator:test")
    assert changed
    return client_id


class Operator:
    """A person holding ``role`` (or none), logged in to the console in their own browser."""

    def __init__(self, app, factories, role: str | None, tenant: str | None = None):
        self.account = factories.account()
        if role is not None:
            with app.app_context():
                grant_role(self.account.id, role, tenant=tenant, actor="operator:test")
        self.browser = Browser(app.test_client(), ISSUER)
        self.http = self.browser.http

    def log_in(self):
        page = self.browser.go("/admin/login")
        assert page.status_code == 200 and 'name="login"' in page.get_data(as_text=True)
        return self.browser.login(page, self.account.phone, self.account.password)

    def get(self, path: str):
        return self.http.get(path)

    def post_form(self, page_path: str, action: str, data: dict | None = None):
        """POST ``action`` with the CSRF token of the page at ``page_path``."""
        token = csrf_token(self.get(page_path).get_data(as_text=True))
        return self.http.post(action, data={"csrf_token": token, **(data or {})})


@pytest.fixture
def operator(app, factories, console_client):
    def make(role: str | None = "super", tenant: str | None = None) -> Operator:
        op = Operator(app, factories, role, tenant)
        op.log_in()
        return op
    return make
