"""Changing the password at /account, or adding a first one to a phone-only account
(app.accounts.credentials), through the pages like a browser: a recent login, the current
password, the hub's rules; the other sessions end and their tokens are revoked (their sites told),
this browser stays logged in with its tokens; the person is told; audited."""

from __future__ import annotations

from app.accounts.models import Account, AuditEvent
from app.extensions import db
from app.oidc.models import SSOSession
from app.worker import run_once
from tests.accounts.test_binding import PHONE, hub_login, make_account, sms  # noqa: F401 (sms: the fixture)
from tests.accounts.test_operator_actions import EMAIL, NEW_PASSWORD, logs_in, signed_in_at
from tests.accounts.test_reauth import age_login
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import RelyingParty, csrf_token


def change(browser, current: str | None, new: str, confirm: str | None = None):
    page = browser.go(f"{ISSUER}/account/password")
    form = {"password": new, "confirm": new if confirm is None else confirm, "submit": "Save password"}
    if current is not None:
        form["current"] = current
    return browser.submit(page, form)


def events(app, account_id: int, kind: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(account_id=account_id, kind=kind)))


def test_change_the_password_keeps_this_session_and_ends_the_others(app, http, factories, receiver, sms):
    me = make_account(app, phone=PHONE, email=EMAIL)
    mine = hub_login(app, PHONE)
    here, _, here_tokens = signed_in_at(http, factories, receiver, browser=mine)  # a site, in this session
    there, elsewhere, there_tokens = signed_in_at(http, factories, receiver)  # another session
    assert "Change your password" in mine.go(f"{ISSUER}/account/").get_data(as_text=True)

    for current, new, confirm, status, message in [
        ("not my password", NEW_PASSWORD, None, 401, "wrong password"),
        (None, NEW_PASSWORD, None, 401, "enter your current password"),
        (PASSWORD, "iloveyou2", None, 400, "one of the most common ones"),
        (PASSWORD, "+1 415 555 0100", None, 400, "cannot be your phone number"),
        (PASSWORD, NEW_PASSWORD, "something else", 400, "the two new passwords are not the same"),
    ]:
        refused = change(mine, current, new, confirm)
        assert refused.status_code == status and message in refused.get_data(as_text=True), (current, new)
    assert logs_in(app, PASSWORD) and events(app, me, "account.password_changed") == []

    page = change(mine, PASSWORD, NEW_PASSWORD)
    assert page.request.path == "/account/" and "Password changed. Your other sessions were logged out." in \
        page.get_data(as_text=True)
    assert not logs_in(app, PASSWORD) and logs_in(app, NEW_PASSWORD)

    assert "Ways to log in" in mine.go(f"{ISSUER}/account/").get_data(as_text=True)  # still logged in here
    assert "Log in to see" in elsewhere.go(f"{ISSUER}/account/").get_data(as_text=True)
    assert here.refresh(here_tokens["refresh_token"]).status_code == 200
    refused = there.refresh(there_tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert there.userinfo(there_tokens["access_token"]).status_code == 401
    with app.app_context():
        ended = set(db.session.scalars(db.select(SSOSession.sid).filter(SSOSession.account_id == me,
                                                                        SSOSession.ended_at.is_not(None))))
        run_once()
    [logout] = receiver.requests  # only the site of the other session is told
    assert logout["claims"]["sid"] in ended and logout["claims"]["aud"] == there.client_id

    notice = sms.texts(PHONE)[-1]
    [mail] = sms.mails(EMAIL)
    assert notice["purpose"] == "password_changed" and notice["code"] is None
    assert mail["subject"] == "Your password was changed"
    for text in (notice["message"], mail["body"]):
        assert "The password of your account was changed" in text and NEW_PASSWORD not in text
    [event] = events(app, me, "account.password_changed")
    assert event.actor == "self" and event.details == {"first": False, "sessions_ended": 2, "tokens_revoked": 1,
                                                        "notify": ["email", "sms"]}
    assert len(events(app, me, "reauth.failure")) == 1  # the wrong current password, on the credential budget


def test_changing_the_password_needs_a_recent_login(app, sms):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    age_login(app, me)
    page = browser.go(f"{ISSUER}/account/password")
    html = page.get_data(as_text=True)
    assert page.request.path == "/account/confirm" and "Confirm it's you" in html
    posted = browser.http.post("/account/password", data={"current": PASSWORD, "password": NEW_PASSWORD,
                                                          "confirm": NEW_PASSWORD, "csrf_token": csrf_token(html)})
    assert posted.status_code == 302 and "/account/confirm" in posted.location and logs_in(app, PASSWORD)
    page = browser.submit(page, {"password": PASSWORD, "submit": "Confirm"})
    assert page.request.path == "/account/password" and "Change your password" in page.get_data(as_text=True)
    assert change(browser, PASSWORD, NEW_PASSWORD).request.path == "/account/"
    assert logs_in(app, NEW_PASSWORD)


def test_a_phone_only_account_adds_a_first_password(app, http, factories, otp_browser, sms):
    me = make_account(app, phone=PHONE, password=None)
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), PHONE), sms.code(PHONE))
    index = otp_browser.go(f"{ISSUER}/account/").get_data(as_text=True)
    assert "Your account has no password" in index and "Add a password" in index
    page = otp_browser.go(f"{ISSUER}/account/password")
    assert "Add a password" in page.get_data(as_text=True) and 'name="current"' not in page.get_data(as_text=True)
    refused = change(otp_browser, None, "password1")
    assert refused.status_code == 400 and "one of the most common ones" in refused.get_data(as_text=True)

    page = change(otp_browser, None, NEW_PASSWORD)
    assert page.request.path == "/account/" and "Password added." in page.get_data(as_text=True)
    hub_login(app, PHONE, NEW_PASSWORD)
    with app.app_context():
        assert db.session.get(Account, me).password_hash.startswith("$argon2id$")
    notice = sms.texts(PHONE)[-1]
    assert notice["purpose"] == "password_set" and "A password was added to your account" in notice["message"]
    [event] = events(app, me, "account.password_changed")
    assert event.details["first"] is True and event.details["notify"] == ["sms"]
    # From now on a change needs it.
    assert change(otp_browser, None, "another fine passphrase").status_code == 401
