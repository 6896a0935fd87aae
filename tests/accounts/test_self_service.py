"""The /account pages: login required, CSRF on every change, profile, email, sessions, connected clients."""

from __future__ import annotations

import hashlib
import re

from app.accounts.models import Identity
from app.extensions import db
from app.oidc.models import Consent, SSOSession
from tests.accounts.test_binding import PHONE, account_row, audit_kinds, hub_login, make_account, sms  # noqa: F401
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import Browser, RelyingParty, authorize, code_from


def test_pages_need_a_hub_session(http):
    for path in ("/account/", "/account/profile", "/account/phone/bind", "/account/deregister"):
        response = http.get(path)
        assert response.status_code == 302 and response.location.endswith("/account/login"), path
    page = http.get("/account/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)


def test_wrong_password_at_the_hub_login(app, http):
    make_account(app, phone=PHONE)
    page = Browser(http, ISSUER).go(f"{ISSUER}/account/login")
    browser = Browser(http, ISSUER)
    response = browser.submit(page, {"login": PHONE, "password": "wrong password", "submit": "Log in"})
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)


def test_every_change_needs_the_csrf_token(app):
    me = make_account(app, phone=PHONE, email="me@example.com")
    browser = hub_login(app, PHONE)
    with app.app_context():
        email_id = db.session.scalar(db.select(Identity.id).filter_by(account_id=me, kind="email"))
        session_id = db.session.scalar(db.select(SSOSession.id).filter_by(account_id=me))
    for path, data in [
        ("/account/profile", {"name": "Mallory"}),
        ("/account/email", {"email": "evil@example.com"}),
        (f"/account/identities/{email_id}/unbind", {}),
        (f"/account/sessions/{session_id}/revoke", {}),
        ("/account/deregister", {}),
        ("/account/phone/bind", {"phone": "+14155550123"}),
    ]:
        response = browser.http.post(path, data=data)
        assert response.status_code == 400, path
    account = account_row(app, me)
    assert account.status == "active" and account.name is None
    assert {"email", "phone"} == {kind for kind, in _identity_kinds(app, me)}


def _identity_kinds(app, account_id):
    with app.app_context():
        return list(db.session.execute(db.select(Identity.kind).filter_by(account_id=account_id, released_at=None)))


def test_profile_edit_is_saved_and_audited(app):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    page = browser.go(f"{ISSUER}/account/profile")
    page = browser.submit(page, {"name": "Li Lei", "nickname": "lei", "picture": "https://img.example.com/l.png",
                                 "locale": "zh-CN", "locality": "Hangzhou", "country": "CN", "submit": "Save"})
    html = page.get_data(as_text=True)
    assert "Profile saved." in html and "profile.updated" in html  # listed among the security events
    account = account_row(app, me)
    assert (account.name, account.nickname, account.locale) == ("Li Lei", "lei", "zh-CN")
    assert account.address == {"locality": "Hangzhou", "country": "CN"}
    page = browser.go(f"{ISSUER}/account/profile")
    assert 'value="Hangzhou"' in page.get_data(as_text=True)
    page = browser.submit(page, {"name": "", "picture": "not a url", "submit": "Save"})
    assert "Invalid URL" in page.get_data(as_text=True) and account_row(app, me).name == "Li Lei"


def test_add_email_sends_a_verification_link(app, sms):  # noqa: F811
    me = make_account(app, phone=PHONE)
    make_account(app, phone="+14155550177", email="taken@example.com")
    browser = hub_login(app, PHONE)
    page = browser.go(f"{ISSUER}/account/")
    page = browser.submit(page, {"email": "Me@Example.com", "submit": "Add email"}, url=f"{ISSUER}/account/email")
    assert "Follow the link" in page.get_data(as_text=True)
    with app.app_context():
        email = db.session.scalar(db.select(Identity).filter_by(account_id=me, kind="email"))
        assert (email.value, email.verified) == ("me@example.com", False)
    assert sms.mails("me@example.com") and sms.mails("me@example.com")[-1]["link"]
    page = browser.submit(page, {"email": "taken@example.com", "submit": "Add email"}, url=f"{ISSUER}/account/email")
    assert "already used by an account" in page.get_data(as_text=True)


def test_revoking_a_session_ends_it(app):
    me = make_account(app, phone=PHONE)
    laptop, phone = hub_login(app, PHONE), hub_login(app, PHONE)
    with app.app_context():
        sessions = list(db.session.scalars(db.select(SSOSession).filter_by(account_id=me).order_by(SSOSession.id)))
    phone_session = sessions[1]
    page = laptop.go(f"{ISSUER}/account/")
    assert page.get_data(as_text=True).count("(this browser)") == 1
    page = laptop.submit(page, {"submit": "Confirm"}, url=f"{ISSUER}/account/sessions/{phone_session.id}/revoke")
    assert "Session ended." in page.get_data(as_text=True)
    assert phone.http.get("/account/").status_code == 302  # that browser is logged out
    assert laptop.http.get("/account/").status_code == 200
    # Its own session: a logout.
    page = laptop.go(f"{ISSUER}/account/")
    page = laptop.submit(page, {"submit": "Confirm"}, url=f"{ISSUER}/account/sessions/{sessions[0].id}/revoke")
    assert "You are logged out" in page.get_data(as_text=True)
    assert laptop.http.get("/account/").status_code == 302
    assert audit_kinds(app, me).count("session.revoked") == 2


def test_a_session_of_someone_else_cannot_be_revoked(app):
    make_account(app, phone=PHONE)
    them = make_account(app, phone="+14155550177")
    mine, theirs = hub_login(app, PHONE), hub_login(app, "+14155550177")
    with app.app_context():
        their_session = db.session.scalar(db.select(SSOSession).filter_by(account_id=them))
    page = mine.go(f"{ISSUER}/account/")
    page = mine.submit(page, {"submit": "Confirm"}, url=f"{ISSUER}/account/sessions/{their_session.id}/revoke")
    assert "no such session" in page.get_data(as_text=True)
    assert theirs.http.get("/account/").status_code == 200


def test_revoking_a_client_revokes_its_tokens_and_consent(app, http, factories):
    account = factories.account()
    client = factories.client(name="Bookshop")
    rp = RelyingParty.for_client(http, ISSUER, client)
    browser = Browser(http, ISSUER)
    request, response = authorize(browser, rp, account, scope="openid profile")
    tokens = rp.exchange(code_from(response, request), request).get_json()
    assert rp.userinfo(tokens["access_token"]).status_code == 200

    page = browser.go(f"{ISSUER}/account/")
    html = page.get_data(as_text=True)
    assert "Bookshop" in html and "1 active token" in html
    with app.app_context():
        client_pk = db.session.scalar(db.select(Consent.client_id).filter_by(account_id=account.id))
    page = browser.submit(page, {"submit": "Confirm"}, url=f"{ISSUER}/account/clients/{client_pk}/revoke")
    assert "Access revoked." in page.get_data(as_text=True) and "Bookshop" not in page.get_data(as_text=True)
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(Consent).filter_by(account_id=account.id)) is None
    assert "consent.revoked" in audit_kinds(app, account.id)
    # The next authorization asks for consent again.
    request, response = authorize(browser, rp, account, consent=False, scope="openid profile")
    assert "Allow access" in response.get_data(as_text=True)


def test_login_through_a_site_also_opens_the_account_pages(app, http, factories):
    account = factories.account(password=PASSWORD)
    client = factories.client()
    browser = Browser(http, ISSUER)
    authorize(browser, RelyingParty.for_client(http, ISSUER, client), account)
    page = browser.go(f"{ISSUER}/account/")
    assert page.status_code == 200 and account.phone in page.get_data(as_text=True)


def _events(page) -> list[str]:
    html = page.get_data(as_text=True)
    return re.findall(r"<tr>(.*?)</tr>", html[html.index('<section id="events">'):html.index('<section id="close">')], re.S)


def test_the_security_history_says_an_administrator_acted_never_who(app):
    """An operator locks and unlocks the person at the command line: /account says "by an
    administrator", without the operator's name or address; the person's own events say nothing more."""
    me = make_account(app, phone=PHONE)
    runner = app.test_cli_runner()
    for args in (["users", "lock", str(me), "--reason", "reported stolen"], ["users", "unlock", str(me)]):
        assert runner.invoke(args=args).exit_code == 0
    rows = _events(hub_login(app, PHONE).go(f"{ISSUER}/account/"))
    by_admin = [r for r in rows if '<span class="by">by an administrator</span>' in r]
    assert {re.search(r"<td>([a-z_.]+)", r).group(1) for r in by_admin} == {"account.locked", "account.unlocked"}
    assert not any("operator" in r for r in rows)
    (login,) = [r for r in rows if "login.success" in r]
    assert 'class="by"' not in login and "127.0.0.1" in login  # the person's own address


def test_the_security_history_names_the_service_that_changed_the_account(app, http, factories):
    """A tenant's legacy system (a client, not an administrator) created the account: the person
    reads the service's name, not its client id."""
    tenant = factories.tenant()
    legacy = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope="sync:write",
                              name="Acme member database")
    rp = RelyingParty(http, ISSUER, legacy.client_id, legacy.client_secret, None)
    token = rp.token_request({"grant_type": "client_credentials", "scope": "sync:write"}).get_json()["access_token"]
    legacy_password = "legacy password 1"
    record = {"phone": PHONE, "phone_verified": True, "version": 1, "password_format": "salted_md5:{salt}{password}",
              "password_hash": "s$" + hashlib.md5(b"s" + legacy_password.encode()).hexdigest()}
    created = http.put(f"/api/sync/{tenant}/accounts/L1", json=record, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.get_data(as_text=True)
    rows = _events(hub_login(app, PHONE, legacy_password).go(f"{ISSUER}/account/"))
    assert any("legacy.created" in r and "by Acme member database" in r for r in rows), rows
    assert not any(legacy.client_id in r for r in rows)
