"""Binding and rebinding a phone (seed 004's three cases and the recycled-number rule), unbinding,
deregistration and its cooling-off, through the /account pages like a browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app.accounts.models import Account, AuditEvent, Identity
from app.extensions import db, limiter
from app.security import utcnow
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import Browser, RelyingParty, authorize, code_from

PHONE = "+14155550100"
OTHER_PHONE = "+14155550111"


# --- helpers (also used by test_self_service and test_invariants) --------------------------------

@pytest.fixture
def sms(app, outbox):
    """The outbox of tests/accounts/conftest.py (codes and mails in files), send limits reset:
    these tests reuse a few fixed numbers."""
    with app.app_context():
        limiter.reset()
    return outbox


def make_account(app, **kwargs) -> int:
    from app.accounts.profile import create_account

    kwargs.setdefault("password", PASSWORD)
    with app.app_context():
        return create_account(**kwargs).id


def hub_login(app, login: str, password: str = PASSWORD) -> Browser:
    """A fresh browser logged in to the hub through /account/login."""
    browser = Browser(app.test_client(), ISSUER)
    page = browser.go(f"{ISSUER}/account/login")
    page = browser.submit(page, {"login": login, "password": password, "submit": "Log in"})
    assert page.status_code == 200 and "Ways to log in" in page.get_data(as_text=True), page.get_data(as_text=True)
    return browser


def send_phone_code(browser: Browser, phone: str, purpose: str = "bind"):
    page = browser.go(f"{ISSUER}/account/phone/{purpose}")
    return browser.submit(page, {"phone": phone, "submit": "Send code"})


def enter_code(browser: Browser, page, code: str):
    return browser.submit(page, {"code": code, "submit": "Confirm"})


def bind(browser: Browser, outbox, phone: str, purpose: str = "bind", typed: str | None = None):
    """Bind (or rebind) ``phone`` (E.164) through the pages; ``typed`` is how the user writes it."""
    page = send_phone_code(browser, typed or phone, purpose)
    assert "Enter the code" in page.get_data(as_text=True), page.get_data(as_text=True)
    return enter_code(browser, page, outbox.code(phone))


def live_identities(app, account_id: int) -> set[tuple[str, str]]:
    with app.app_context():
        return {(i.kind, i.value) for i in db.session.scalars(
            db.select(Identity).filter_by(account_id=account_id, released_at=None))}


def account_row(app, account_id: int) -> Account:
    with app.app_context():
        account = db.session.get(Account, account_id)
        db.session.expunge(account)
        return account


def audit_kinds(app, account_id: int) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent.kind).filter_by(account_id=account_id).order_by(AuditEvent.id)))


def use_at_a_site(app, http, factories, phone: str):
    """Log the phone's account in at a (consenting) site: the account now has business data."""
    client = factories.client()
    rp = RelyingParty.for_client(http, ISSUER, client)
    browser = Browser(http, ISSUER)
    account = type("A", (), {"phone": phone, "password": PASSWORD})
    request, response = authorize(browser, rp, account, scope="openid profile")
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp, tokens, client


# --- the three cases of seed 004 -------------------------------------------------------------------

def test_bind_a_new_phone(app, sms):
    me = make_account(app, email="me@example.com")
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE, typed="(415) 555-0100")
    assert page.status_code == 200 and "Phone number saved." in page.get_data(as_text=True)
    assert live_identities(app, me) == {("email", "me@example.com"), ("phone", PHONE)}
    assert sms.texts(PHONE)[-1]["purpose"] == "bind"
    assert "identity.bound" in audit_kinds(app, me)


def test_bind_the_phone_of_an_empty_account_moves_it_and_closes_that_account(app, sms):
    me = make_account(app, email="me@example.com")
    empty = make_account(app, phone=PHONE, email="old@example.com")  # never used anywhere, no profile
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE)
    assert "unused account it belonged to was closed" in page.get_data(as_text=True)
    # Every identity of the empty account moved: nothing that let its owner in is lost.
    assert live_identities(app, me) == {("email", "me@example.com"), ("phone", PHONE), ("email", "old@example.com")}
    assert live_identities(app, empty) == set()
    closed = account_row(app, empty)
    assert closed.status == "closed" and closed.closed_at is not None
    assert "account.closed" in audit_kinds(app, empty)
    # The phone (and the moved email) now log in to the surviving account.
    hub_login(app, PHONE)
    hub_login(app, "old@example.com")


@pytest.mark.parametrize("data", ["used at a site", "profile"])
def test_bind_the_phone_of_an_account_with_data_needs_a_merge(app, sms, http, factories, data):
    me = make_account(app, email="me@example.com")
    other = make_account(app, phone=PHONE, **({"nickname": "Xiao Li"} if data == "profile" else {}))
    if data == "used at a site":
        use_at_a_site(app, http, factories, PHONE)
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE)
    assert page.status_code == 409
    assert "merge" in page.get_data(as_text=True) and "the number was not moved" in page.get_data(as_text=True)
    assert live_identities(app, other) == {("phone", PHONE)}
    assert account_row(app, other).status == "active"
    assert live_identities(app, me) == {("email", "me@example.com")}


def test_subjects_of_an_absorbed_empty_account_keep_resolving(app, ctx):
    """Case (b) aliases the closed account's subjects (none under today's definition of business
    data, which counts a subject as data; the step guards the rule if that definition narrows)."""
    from app.accounts import binding
    from app.oidc.models import SubjectMapping

    survivor = make_account(app, email="me@example.com")
    empty = make_account(app, phone=PHONE)
    db.session.add(SubjectMapping(sector="rp.example.com", account_id=empty, sub="sub-of-empty", alias=False))
    db.session.commit()
    binding._absorb_empty(db.session.get(Account, empty), db.session.get(Account, survivor),
                          db.session.scalar(db.select(Identity).filter_by(value=PHONE)))
    db.session.commit()
    mapping = db.session.scalar(db.select(SubjectMapping).filter_by(sub="sub-of-empty"))
    assert (mapping.account_id, mapping.alias) == (survivor, True)


def test_recycled_number_of_a_dormant_account_is_not_inherited(app, sms):
    me = make_account(app, email="me@example.com")
    dormant = make_account(app, phone=PHONE, name="Previous Owner")  # has data, but no login for years
    with app.app_context():
        long_ago = utcnow() - timedelta(days=app.config["TESSERA_DORMANT_DAYS"] + 1)
        db.session.execute(db.update(Account).where(Account.id == dormant).values(created_at=long_ago, last_login_at=long_ago))
        db.session.commit()
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE)
    assert page.status_code == 200 and "Phone number saved." in page.get_data(as_text=True)
    assert ("phone", PHONE) in live_identities(app, me)
    old = account_row(app, dormant)
    # Nothing of the dormant account moved; it lost its only way in, so it is locked for recovery.
    assert old.name == "Previous Owner" and old.status == "locked" and live_identities(app, dormant) == set()
    assert {"identity.released", "account.locked"} <= set(audit_kinds(app, dormant))


# --- rebind ---------------------------------------------------------------------------------------

def test_rebind_with_a_code_to_the_new_number(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    page = bind(browser, sms, OTHER_PHONE, purpose="rebind")
    assert page.status_code == 200 and "Phone number saved." in page.get_data(as_text=True)
    assert [m["purpose"] for m in sms.texts(OTHER_PHONE)] == ["rebind"] and not sms.texts(PHONE)
    assert live_identities(app, me) == {("phone", OTHER_PHONE)}
    assert "identity.rebound" in audit_kinds(app, me)
    # The old number is free again: somebody else can register it.
    make_account(app, phone=PHONE)


def test_a_phone_change_reaches_subscribed_partners_as_a_claims_change(app, sms, http, factories, receiver):
    """The phone_number claim follows the primary phone: a rebind changes it (a claims-changed SET
    and a change-log entry for the partners that may read it); a second phone does not."""
    from app.worker import run_once
    from tests.partners.conftest import Partners

    partners = Partners(app, factories, http)
    subscriber = partners.make(read="phone_number", subscribe=True, events_endpoint=f"{receiver.url}/events")
    me = make_account(app, phone=PHONE)
    sub = partners.share(subscriber, me)
    browser = hub_login(app, PHONE)
    assert "Phone number saved." in bind(browser, sms, OTHER_PHONE, purpose="rebind").get_data(as_text=True)
    assert "saved" in bind(browser, sms, "+14155550122").get_data(as_text=True)  # a second phone: not the claim
    with app.app_context():
        while run_once():
            pass
    events = [r["claims"]["events"]["urn:tessera:event:claims-changed"] for r in receiver.requests]
    assert [(e["subject"]["sub"], e["claims"]) for e in events] == [(sub, ["phone_number"])]
    changes = http.get("/api/changes", headers=subscriber.headers()).get_json()["changes"]
    assert [(c["sub"], c["claims"]) for c in changes] == [(sub, ["phone_number"])]


def test_rebind_needs_the_code_of_the_new_number(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    page = send_phone_code(browser, OTHER_PHONE, "rebind")
    page = enter_code(browser, page, "000000" if sms.code(OTHER_PHONE) != "000000" else "111111")
    assert "invalid or expired code" in page.get_data(as_text=True)
    assert live_identities(app, me) == {("phone", PHONE)}


def test_rebind_to_a_number_of_an_account_with_data_needs_a_merge(app, sms, http, factories):
    me = make_account(app, phone=PHONE)
    make_account(app, phone=OTHER_PHONE)
    use_at_a_site(app, http, factories, OTHER_PHONE)
    browser = hub_login(app, PHONE)
    assert bind(browser, sms, OTHER_PHONE, purpose="rebind").status_code == 409
    assert live_identities(app, me) == {("phone", PHONE)}


# --- unbind ---------------------------------------------------------------------------------------

def _identity_id(app, account_id, kind):
    with app.app_context():
        return db.session.scalar(db.select(Identity.id).filter_by(account_id=account_id, kind=kind, released_at=None))


def _unbind(browser, identity_id):
    page = browser.go(f"{ISSUER}/account/")
    return browser.submit(page, {"submit": "Confirm"}, url=f"{ISSUER}/account/identities/{identity_id}/unbind")


def test_unbind_keeps_the_last_way_in(app):
    me = make_account(app, phone=PHONE, email="me@example.com")  # verified email + password: a way in
    browser = hub_login(app, PHONE)
    page = _unbind(browser, _identity_id(app, me, "phone"))
    assert "Removed." in page.get_data(as_text=True)
    assert live_identities(app, me) == {("email", "me@example.com")}
    page = _unbind(browser, _identity_id(app, me, "email"))
    assert "last way to log in" in page.get_data(as_text=True)
    assert live_identities(app, me) == {("email", "me@example.com")}
    assert audit_kinds(app, me).count("identity.unbound") == 1


def test_an_unverified_email_or_an_email_without_password_is_no_way_in(app, ctx):
    from app.accounts import binding
    from app.accounts.profile import create_account
    from app.errors import Conflict

    unverified = create_account(phone=PHONE, password=PASSWORD)
    binding.add_email(unverified.id, "typo@example.com")
    no_password = create_account(phone=OTHER_PHONE, email="me@example.com")
    for account in (unverified, no_password):
        phone = db.session.scalar(db.select(Identity.id).filter_by(account_id=account.id, kind="phone"))
        with pytest.raises(Conflict, match="last way to log in"):
            binding.unbind_identity(account.id, phone)


# --- deregistration -------------------------------------------------------------------------------

def test_deregistration_ends_everything_and_releases_identities_after_the_cooling_off(app, http, factories, receiver):
    from app.worker import run_once
    from app.oidc.subjects import accounts_for_subjects

    me = make_account(app, phone=PHONE, email="me@example.com")
    client = factories.client(backchannel_logout_uri=f"{receiver.url}/bc")
    rp = RelyingParty.for_client(http, ISSUER, client)
    browser = Browser(http, ISSUER)
    request, response = authorize(browser, rp, type("A", (), {"phone": PHONE, "password": PASSWORD}))
    tokens = rp.exchange(code_from(response, request), request).get_json()
    sub = rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]
    assert rp.userinfo(tokens["access_token"]).status_code == 200

    page = browser.go(f"{ISSUER}/account/deregister")
    page = browser.submit(page, {"submit": "Close my account"})
    assert page.status_code == 200 and "You are logged out" in page.get_data(as_text=True)
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert browser.go(f"{ISSUER}/account/").status_code == 200  # the login page: no session any more
    assert "Log in to see" in browser.last_page.get_data(as_text=True)
    with app.app_context():
        run_once()
    assert [r["path"] for r in receiver.requests] == ["/bc"]
    closed = account_row(app, me)
    assert closed.status == "closed" and closed.closed_at is not None

    # Cooling-off: the identities stay reserved.
    from app.errors import Conflict

    with app.app_context():
        run_once()
        assert len(live_identities(app, me)) == 2
        with pytest.raises(Conflict):
            make_account(app, phone=PHONE)
        days = app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"]
        db.session.execute(text("UPDATE accounts SET closed_at = :at WHERE id = :id"),
                           {"at": utcnow() - timedelta(days=days, minutes=1), "id": me})
        db.session.commit()
        run_once()
    assert live_identities(app, me) == set()
    newcomer = make_account(app, phone=PHONE)
    assert newcomer != me  # a new id, so new subjects: the old ones are never reused
    with app.app_context():
        from app.oidc.clients import get_client

        assert accounts_for_subjects(get_client(client.client_id), [sub]) == {sub: me}  # the old sub names the closed account
    assert "identity.released" in audit_kinds(app, me)
