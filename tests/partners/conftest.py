"""Partner API fixtures: partner clients with a data contract, people who agreed to share."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import ISSUER
from tests.rp import RelyingParty

ALL_SCOPES = "partner:read partner:write partner:lookup partner:register"


@dataclass
class Partner:
    client_id: str
    client_secret: str
    redirect_uri: str
    tenant: str
    salt: str
    http: object

    def token(self, scope: str = ALL_SCOPES) -> str:
        rp = RelyingParty(self.http, ISSUER, self.client_id, self.client_secret, self.redirect_uri)
        response = rp.token_request({"grant_type": "client_credentials", "scope": scope})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    def headers(self, scope: str = ALL_SCOPES, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token(scope)}", **extra}


class Partners:
    def __init__(self, app, factories, http):
        self.app, self.factories, self.http = app, factories, http
        self._n = 0

    def make(self, *, read="name,nickname,picture,addresses,phone_number", write="nickname,addresses,attributes.*",
             tenant: str | None = None, trusted: bool = False, subscribe: bool = False,
             events_endpoint: str | None = None, token_exchange: bool = False, host: str | None = None,
             subject_type: str = "pairwise", write_acr: str | None = None) -> Partner:
        from app.partners.contracts import set_contract

        self._n += 1
        tenant = tenant or self.factories.tenant()
        redirect_uri = f"https://{host or f'partner{self._n}.example.com'}/cb"
        client = self.factories.client(
            redirect_uri=redirect_uri, tenant=tenant, trusted=trusted, events_endpoint=events_endpoint, subject_type=subject_type,
            grant_types=["authorization_code", "client_credentials"], scope=f"openid profile partner {ALL_SCOPES}",
        )
        with self.app.app_context():
            _, contract = set_contract(client.client_id, read=read.split(","), write=write.split(","),
                                       subscribe=subscribe, token_exchange=token_exchange or None, write_acr=write_acr,
                                       actor="operator:test")
            salt = contract.lookup_salt
        return Partner(client.client_id, client.client_secret, redirect_uri, tenant, salt, self.http)

    def share(self, partner: Partner, account_id: int, consent: bool = True) -> str:
        """The person agrees to share with the partner (a consent covering "partner"); the sub it sees."""
        from app.extensions import db
        from app.oidc.authorization import grant_consent
        from app.oidc.clients import get_client
        from app.oidc.subjects import subject_for

        with self.app.app_context():
            client = get_client(partner.client_id)
            if consent:
                grant_consent(account_id, client, "partner")
            sub = subject_for(client, account_id)
            db.session.commit()
            return sub


@pytest.fixture
def partners(app, factories, http):
    return Partners(app, factories, http)
