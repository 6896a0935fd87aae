"""A change to how a person logs in (changing the phone, removing a way in) and deregistration
need a recent login (TESSERA_REAUTH_MAX_AGE): an older hub session is asked to confirm it is the
person — the password, or a code to the account's verified phone — at /account/confirm, through
the pages like a browser."""

from __future__ import annotations

from sqlalchemy import update

from app.accounts.models import Account, AuditEvent, Identity
from app.extensions import db
from app.oidc.models import SSOSession
from tests.accounts.test_binding import (  # noqa: F401 (sms: the fixture)
    OTHER_PHONE, PHONE, audit_kinds, bind, hub_login, live_identities, make_account, sms)
from tests.conftest import ISSUER
from tests.factories import PASSWORD


def age_login(app, account_id: int, seconds: int = 3600) -> None:
    """The account's hub sessions logged in ``seconds`` ago."""
    with app.app_context():
        db.session.execute(update(SSOSession).where(SSOSession.account_id == account_id)
                           .values(auth_time=SSOSession.auth_time - seconds))
        db.session.commit()


def test_a_fresh_login_is_not_asked_again(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    page = browser.go(f"{ISSUER}/account/phone/rebind")
    assert page.request.path == "/account/phone/rebind" and "Confirm it's you" not in page.get_data(as_text=True)
    assert "Phone number saved." in bind(browser, sms, OTHER_PHONE, purpose="rebind").get_data(as_text=True)
    assert live_identities(app, me) == {("phone", OTHER_PHONE)}


def test_an_old_login_confirms_with_the_password_then_goes_on(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    age_login(app, me)
    page = browser.go(f"{ISSUER}/account/phone/rebind")
    assert page.request.path == "/account/confirm" and "Confirm it's you" in page.get_data(as_text=True)
    wrong = browser.submit(page, {"password": "not the password", "submit": "Confirm"})
    assert wrong.status_code == 401 and "wrong password" in wrong.get_data(as_text=True)
    page = browser.submit(wrong, {"password": PASSWORD, "submit": "Confirm"})
    assert page.request.path == "/account/phone/rebind" and "Send code" in page.get_data(as_text=True)
    assert "Phone number saved." in bind(browser, sms, OTHER_PHONE, purpose="rebind").get_data(as_text=True)
    assert live_identities(app, me) == {("phone", OTHER_PHONE)}
    kinds = audit_kinds(app, me)
    assert kinds.index("reauth.failure") < kinds.index("reauth.success") < kinds.index("identity.rebound")
    with app.app_context():
        hub_session = db.session.scalar(db.select(SSOSession).filter_by(account_id=me))
        assert "pwd" in hub_session.amr


def test_an_old_login_cannot_remove_a_way_in_or_close_the_account(app, sms):
    me = make_account(app, phone=PHONE, email="me@example.com")
    browser = hub_login(app, PHONE)
    index = browser.go(f"{ISSUER}/account/")
    age_login(app, me)
    with app.app_context():
        email = db.session.scalar(db.select(Identity.id).filter_by(account_id=me, kind="email"))
    page = browser.submit(index, {"submit": "Confirm"}, url=f"{ISSUER}/account/identities/{email}/unbind")
    assert page.request.path == "/account/confirm" and page.request.args["next"] == "/account/"
    assert live_identities(app, me) == {("phone", PHONE), ("email", "me@example.com")}
    closing = browser.go(f"{ISSUER}/account/deregister")
    assert closing.request.path == "/account/confirm" and closing.request.args["next"] == "/account/deregister"
    with app.app_context():
        assert db.session.get(Account, me).status == "active"


def test_an_account_without_a_password_confirms_with_a_code_to_its_phone(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    with app.app_context():  # an account made by phone sign-up has no password
        db.session.execute(update(Account).where(Account.id == me).values(password_hash=None))
        db.session.commit()
    age_login(app, me)
    page = browser.go(f"{ISSUER}/account/deregister")
    assert page.request.path == "/account/confirm" and 'name="password"' not in page.get_data(as_text=True)
    page = browser.submit(page, {"send": f"Send a code to {PHONE}"})
    assert [m["purpose"] for m in sms.texts(PHONE)] == ["reauth"]
    wrong_code = "000000" if sms.code(PHONE) != "000000" else "111111"
    wrong = browser.submit(page, {"code": wrong_code, "submit": "Confirm"})
    assert wrong.status_code == 401
    page = browser.submit(wrong, {"send": "Send another code"})
    page = browser.submit(page, {"code": sms.code(PHONE), "submit": "Confirm"})
    assert page.request.path == "/account/deregister" and "Close my account" in page.get_data(as_text=True)
    browser.submit(page, {"submit": "Close my account"})
    with app.app_context():
        assert db.session.get(Account, me).status == "closed"
        methods = [e.details["method"] for e in db.session.scalars(
            db.select(AuditEvent).filter(AuditEvent.account_id == me, AuditEvent.kind.like("reauth.%")))]
        assert methods == ["otp", "otp"]  # the wrong code, then the right one


def test_confirm_only_sends_the_browser_back_to_the_account_pages(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    age_login(app, me)
    for target in ("https://evil.example/account/", "//evil.example/account/", "/authorize?x=1"):
        page = browser.go(f"{ISSUER}/account/confirm?next={target}")
        page = browser.submit(page, {"password": PASSWORD, "submit": "Confirm"}, url=page.request.url)
        assert page.request.path == "/account/", target
        age_login(app, me)


def test_confirm_never_answers_5xx_for_a_return_path_with_control_characters(app, sms):
    """A ``next`` of the account pages holding CR, LF, TAB or DEL cannot go into a Location
    header (werkzeug refuses it: a 500 after the right password): it falls back to /account/.
    (NUL is refused with a 400 before any view: app/input_guard.py.)"""
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    assert browser.go(f"{ISSUER}/account/confirm?next=/account/%00").status_code == 400
    for target in ("/account/%0D%0AX-Injected:%201", "/account/%0Aprofile", "/account/%09profile",
                   "/account/%7F", "/account/%C2%85"):
        age_login(app, me)
        page = browser.go(f"{ISSUER}/account/confirm?next={target}")
        assert page.status_code == 200, target
        page = browser.submit(page, {"password": PASSWORD, "submit": "Confirm"}, url=page.request.url)
        assert page.request.path == "/account/", target
