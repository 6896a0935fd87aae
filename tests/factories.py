"""Small factories for test data, built through the services (the same code the CLI uses)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

_seq = itertools.count(1)

PASSWORD = "correct horse battery"


@dataclass
class TestClient:
    client_id: str
    client_secret: str | None
    redirect_uri: str
    sector: str


@dataclass
class TestAccount:
    id: int
    phone: str
    email: str | None
    password: str


class Factories:
    def __init__(self, app):
        self.app = app

    def tenant(self, slug: str | None = None, name: str | None = None, **kwargs) -> str:
        from app.extensions import db
        from app.tenants.models import Tenant
        from app.tenants.service import create_tenant

        slug = slug or f"tenant-{next(_seq)}"
        with self.app.app_context():
            if db.session.scalar(db.select(Tenant).filter_by(slug=slug)) is None:
                create_tenant(slug, name or slug.title(), **kwargs)
        return slug

    def account(self, phone: str | None = None, password: str = PASSWORD, email: str | None = None, **profile) -> TestAccount:
        from app.accounts.profile import create_account

        n = next(_seq)
        phone = phone or f"+1415555{n:04d}"
        with self.app.app_context():
            account = create_account(phone=phone, password=password, email=email, **profile)
            return TestAccount(id=account.id, phone=account.identity("phone").value, email=email, password=password)

    def client(self, redirect_uri: str = "https://rp.example.com/callback", tenant: str | None = None, **kwargs) -> TestClient:
        from app.oidc.clients import create_client

        tenant = tenant or self.tenant()
        kwargs.setdefault("redirect_uris", [redirect_uri])
        kwargs.setdefault("name", f"Client {next(_seq)}")
        with self.app.app_context():
            registered = create_client(tenant=tenant, **kwargs)
            return TestClient(
                client_id=registered.client.client_id, client_secret=registered.client_secret,
                redirect_uri=kwargs["redirect_uris"][0] if kwargs["redirect_uris"] else redirect_uri,
                sector=registered.client.sector_identifier,
            )
