"""Lazy migration: a login with an identifier the hub does not know asks the tenant's legacy
verification webhook (a real HTTP server on 127.0.0.1 here); on success the account is imported
with an argon2id hash of the password just typed, else the usual failure, with no difference."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from app.accounts.models import Account, Identity
from app.bulk_import.models import LegacyMapping
from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from

LEGACY_USERS = {
    ("mia", "mia's legacy pw"): {"legacy_id": "U-1", "username": "mia", "phone": "+14155550200",
                                  "phone_verified": True, "email": "mia@example.com", "name": "Mia"},
    # A legacy account naming the phone of someone who has a hub account (VICTIM_PHONE).
    ("eve", "eve's legacy pw"): {"legacy_id": "U-9", "username": "eve", "phone": "+14155550299",
                                  "phone_verified": True, "email": "eve@example.com"},
}
VICTIM_PHONE = "+14155550299"


class LegacySystem:
    """The legacy system's verification webhook: 200 + record, 401, or whatever ``status`` says."""

    def __init__(self):
        self.calls, self.status, self.delay = [], None, 0.0
        legacy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                legacy.calls.append(body)
                time.sleep(legacy.delay)
                record = LEGACY_USERS.get((body.get("login"), body.get("password")))
                status = legacy.status or (200 if record else 401)
                payload = json.dumps(record if status == 200 else {"error": "no"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/verify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def legacy(app, factories):
    system = LegacySystem()
    system.tenant = factories.tenant()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tenants", "set-legacy-verify", "--slug", system.tenant, "--url", system.url])
    assert result.exit_code == 0, result.output
    yield system
    system.close()


def _login(app, factories, http, browser, tenant, login, password):
    site = factories.client(tenant=tenant, trusted=True)
    return authorize(browser, RelyingParty.for_client(http, ISSUER, site), SimpleNamespace(phone=login, password=password))


def test_unknown_login_is_imported_from_the_legacy_system(app, factories, http, browser, legacy):
    request, response = _login(app, factories, http, browser, legacy.tenant, "mia", "mia's legacy pw")
    code_from(response, request)
    assert legacy.calls == [{"login": "mia", "password": "mia's legacy pw"}]
    with app.app_context():
        mapping = db.session.scalar(db.select(LegacyMapping).filter_by(legacy_id="U-1"))
        account = db.session.get(Account, mapping.account_id)
        assert mapping.source == "lazy" and account.name == "Mia"
        assert account.password_hash.startswith("$argon2id$") and account.identity("phone").value == "+14155550200"
    # Now the hub knows the person: the next login does not ask the legacy system.
    request, response = _login(app, factories, http, browser, legacy.tenant, "mia@example.com", "mia's legacy pw")
    code_from(response, request)
    assert len(legacy.calls) == 1


@pytest.mark.parametrize("status", [None, 404, 500])
def test_refusals_and_errors_answer_like_any_failed_login(app, factories, http, browser, legacy, status):
    legacy.status = status
    password = "wrong" if status is None else "mia's legacy pw"
    request, response = _login(app, factories, http, browser, legacy.tenant, "mia", password)
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)
    assert len(legacy.calls) == 1
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(LegacyMapping)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(Account)) == 0


def test_a_timeout_is_a_failed_login(app, factories, http, browser, legacy):
    app.config["TESSERA_OUTBOUND_TIMEOUT"] = 0.2
    legacy.delay = 0.6
    try:
        request, response = _login(app, factories, http, browser, legacy.tenant, "mia", "mia's legacy pw")
    finally:
        app.config["TESSERA_OUTBOUND_TIMEOUT"] = 5.0
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)


@pytest.mark.parametrize("created", [True, False])
def test_mapped_account_without_password_gets_it_from_the_legacy_system(app, factories, http, browser, legacy, created):
    """Only an account the legacy record created: one it was linked to (the person's) never has its
    password set by the legacy system, which is then not even asked."""
    from app.tenants.models import Tenant

    with app.app_context():
        tenant = db.session.scalar(db.select(Tenant).filter_by(slug=legacy.tenant))
        account = Account(name="Imported Mia")
        db.session.add(account)
        db.session.flush()
        db.session.add(Identity(account_id=account.id, kind="username", namespace=str(tenant.id), value="mia", verified=True))
        db.session.add(LegacyMapping(tenant_id=tenant.id, legacy_id="U-1", account_id=account.id, source="import",
                                     created_account=created))
        db.session.commit()
        account_id = account.id
    request, response = _login(app, factories, http, browser, legacy.tenant, "mia", "mia's legacy pw")
    if not created:
        assert response.status_code == 401 and legacy.calls == []
        with app.app_context():
            assert db.session.get(Account, account_id).password_hash is None
        return
    code_from(response, request)
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account.password_hash.startswith("$argon2id$") and account.name == "Imported Mia"
        assert db.session.scalar(db.select(db.func.count()).select_from(Account)) == 1


def test_known_accounts_with_a_password_and_tenants_without_webhook_never_ask(app, factories, http, browser, legacy):
    known = factories.account(phone="+14155550201")
    request, response = _login(app, factories, http, browser, legacy.tenant, known.phone, "wrong password")
    assert response.status_code == 401
    request, response = _login(app, factories, http, browser, factories.tenant(), "mia", "mia's legacy pw")
    assert response.status_code == 401
    assert legacy.calls == []


def test_set_legacy_verify_refuses_http_in_production(app, factories):
    app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = False
    try:
        result = app.test_cli_runner().invoke(args=["tenants", "set-legacy-verify", "--slug", factories.tenant(),
                                                    "--url", "http://legacy.example.com/verify"])
    finally:
        app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = True
    assert result.exit_code != 0 and "https" in result.output


def test_a_webhook_record_naming_someone_elses_phone_never_links(app, factories, http, browser, legacy):
    """The legacy system vouches for "eve", whose record carries the phone of a hub account it did
    not create: the login fails, nothing is linked or written to that account, and the conflict
    waits for the phone's holder (who, logging in at a site of the tenant, proves it)."""
    from app.bulk_import.models import SyncConflict

    victim = factories.account(phone=VICTIM_PHONE, email="victim@example.com")
    request, response = _login(app, factories, http, browser, legacy.tenant, "eve", "eve's legacy pw")
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)
    assert len(legacy.calls) == 1
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(LegacyMapping)) == 0
        assert {(i.kind, i.value) for i in db.session.get(Account, victim.id).identities} == {
            ("phone", VICTIM_PHONE), ("email", "victim@example.com")}
        conflict = db.session.scalar(db.select(SyncConflict))
        assert (conflict.legacy_id, conflict.source, conflict.account_id, conflict.status) == ("U-9", "lazy", victim.id, "pending")
        assert "password" not in str(conflict.record)
    request, response = _login(app, factories, http, browser, legacy.tenant, "eve", "eve's legacy pw")
    assert response.status_code == 401

    # The phone's holder logs in at a site of the tenant (with the prompt: a fresh login).
    site = factories.client(tenant=legacy.tenant, trusted=True)
    request, response = authorize(browser, RelyingParty.for_client(http, ISSUER, site), victim, prompt="login")
    code_from(response, request)
    with app.app_context():
        mapping = db.session.scalar(db.select(LegacyMapping).filter_by(legacy_id="U-9"))
        assert mapping.account_id == victim.id and not mapping.created_account and mapping.source == "lazy"
        assert ("username", "eve") in {(i.kind, i.value) for i in db.session.get(Account, victim.id).identities}
    # "eve" now names the person's account, which has a password: the legacy system is not asked,
    # and its password is not the account's.
    request, response = authorize(browser, RelyingParty.for_client(http, ISSUER, site),
                                  SimpleNamespace(phone="eve", password="eve's legacy pw"), prompt="login")
    assert response.status_code == 401 and len(legacy.calls) == 2
