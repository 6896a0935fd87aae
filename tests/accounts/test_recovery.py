"""Forgot password (app.accounts.recovery, docs/flows/recovery.md), through the pages like a
browser: a code to the verified phone or a link to the verified email, then a new password; every
session and token of the account ends with it (back-channel logout to the sites), the person is
told; the same answers for every identifier; the budgets; single use; back to the authorization
request the person came from."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.accounts.models import Account, AuditEvent, OtpChallenge
from app.extensions import db
from app.security import utcnow
from app.worker import run_once
from tests.accounts.test_binding import PHONE, hub_login, make_account, sms  # noqa: F401 (sms: the fixture)
from tests.accounts.test_operator_actions import EMAIL, NEW_PASSWORD, logs_in, signed_in_at
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import CSRF_RE, Browser, RelyingParty, code_from

CODE_PAGE = "/password/forgot/code"


def new_browser(app) -> Browser:
    return Browser(app.test_client(), ISSUER)


def ask(browser: Browser, identifier: str, url: str = f"{ISSUER}/password/forgot"):
    """Forgot password: type the phone or email. Follows the redirect (to the code page, for a phone)."""
    return browser.submit(browser.go(url), {"login": identifier, "submit": "Continue"})


def enter_code(browser: Browser, page, code: str):
    return browser.submit(page, {"code": code, "submit": "Continue"})


def set_password(browser: Browser, page, password: str, confirm: str | None = None):
    return browser.submit(page, {"password": password, "confirm": password if confirm is None else confirm,
                                 "submit": "Set password"})


def reset_codes(outbox, phone: str) -> list[str]:
    return [m["code"] for m in outbox.texts(phone) if m["purpose"] == "reset"]


def other_than(code: str | None) -> str:
    return "111111" if code == "000000" else "000000"


def without_csrf(response) -> str:
    return CSRF_RE.sub("", response.get_data(as_text=True))


def events(app, account_id: int, kind: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(account_id=account_id, kind=kind)))


def set_account(app, account_id: int, **values) -> None:
    with app.app_context():
        db.session.execute(update(Account).where(Account.id == account_id).values(**values))
        db.session.commit()


def logged_out(browser: Browser) -> bool:
    return "Log in to see" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)


# --- the two ways, end to end --------------------------------------------------------------------

def test_a_code_to_the_phone_resets_the_password_and_ends_every_session_and_token(app, http, factories, receiver, sms):
    me = make_account(app, phone=PHONE, email=EMAIL)
    rp, site_browser, tokens = signed_in_at(http, factories, receiver)
    other_browser = hub_login(app, PHONE)

    browser = new_browser(app)
    page = ask(browser, "(415) 555-0100")
    assert page.request.path == CODE_PAGE and "Enter your code" in page.get_data(as_text=True)
    [code] = reset_codes(sms, PHONE)
    page = enter_code(browser, page, code)
    assert page.request.path.startswith("/password/reset/") and "Choose a new password" in page.get_data(as_text=True)
    done = set_password(browser, page, NEW_PASSWORD)
    assert done.status_code == 200 and "Your password was changed" in done.get_data(as_text=True)

    assert not logs_in(app, PASSWORD) and logs_in(app, NEW_PASSWORD)
    assert logged_out(site_browser) and logged_out(other_browser)
    refused = rp.refresh(tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    with app.app_context():
        run_once()
    [logout] = receiver.requests  # the site was told by back-channel logout
    assert logout["path"] == "/bc" and "http://schemas.openid.net/event/backchannel-logout" in logout["claims"]["events"]

    notice = sms.texts(PHONE)[-1]
    [mail] = sms.mails(EMAIL)
    assert notice["code"] is None and notice["purpose"] == "password_reset" and mail["subject"] == "Your password was reset"
    for text in (notice["message"], mail["body"]):
        assert "was reset with a code sent to your phone" in text and NEW_PASSWORD not in text
    [event] = events(app, me, "account.password_reset")
    assert event.actor == "self" and event.details == {"method": "sms", "sessions_ended": 2, "tokens_revoked": 1,
                                                        "notify": ["email", "sms"]}
    with app.app_context():
        assert db.session.get(Account, me).password_hash.startswith("$argon2id$")


def test_a_link_to_the_email_resets_the_password_once(app, http, factories, sms):
    me = make_account(app, phone=PHONE, email=EMAIL)
    other_browser = hub_login(app, EMAIL)
    browser = new_browser(app)
    sent = ask(browser, "  Li.Lei@Example.com ")
    assert sent.status_code == 200 and "Check your email" in sent.get_data(as_text=True)
    [mail] = sms.mails(EMAIL)
    assert mail["subject"] == "Reset your password" and "within 30 minutes" in mail["body"]
    assert mail["link"].startswith(f"{ISSUER}/password/reset/") and mail["link"] in mail["body"]
    assert reset_codes(sms, PHONE) == []

    assert new_browser(app).go(mail["link"]).status_code == 200  # opening it (a mail scanner) spends nothing
    page = browser.go(mail["link"])
    assert page.status_code == 200 and "Choose a new password" in page.get_data(as_text=True)
    done = set_password(browser, page, NEW_PASSWORD)
    assert "Your password was changed" in done.get_data(as_text=True)
    assert logs_in(app, NEW_PASSWORD) and not logs_in(app, PASSWORD) and logged_out(other_browser)
    assert sms.mails(EMAIL)[-1]["subject"] == "Your password was reset"
    assert "with a link sent to your email" in sms.texts(PHONE)[-1]["message"]
    assert [e.details["method"] for e in events(app, me, "account.password_reset")] == ["email"]

    # The link is spent: opening it again, or posting to it (another tab), is refused.
    again = new_browser(app).go(mail["link"])
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
    replay = set_password(browser, page, "yet another passphrase")
    assert replay.status_code == 400 and "already used" in replay.get_data(as_text=True)
    assert logs_in(app, NEW_PASSWORD)


def test_two_uses_of_one_link_at_once_reset_once(app, sms):
    make_account(app, phone=PHONE, email=EMAIL)
    ask(new_browser(app), EMAIL)
    link = sms.mails(EMAIL)[-1]["link"]
    browsers = [new_browser(app), new_browser(app)]
    pages = [b.go(link) for b in browsers]
    start, answers = threading.Barrier(2, timeout=30), {}

    def use(i: int) -> None:
        start.wait()
        answers[i] = set_password(browsers[i], pages[i], f"concurrent passphrase {i}")

    threads = [threading.Thread(target=use, args=(i,), daemon=True) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a.status_code for a in answers.values()) == [200, 400]
    [winner] = [i for i, a in answers.items() if a.status_code == 200]
    assert logs_in(app, f"concurrent passphrase {winner}") and not logs_in(app, f"concurrent passphrase {1 - winner}")
    assert len(sms.mails(EMAIL)) == 2  # the link, and one notice


def test_a_reset_from_an_authorization_request_goes_back_to_its_login(app, http, factories, sms):
    make_account(app, phone=PHONE, email=EMAIL)
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    browser = new_browser(app)
    request = rp.authorization_request()
    login_page = browser.go(request.url)
    link = re.search(r'href="(/password/forgot\?interaction=[^"]+)"', login_page.get_data(as_text=True))
    assert link and "Forgot password?" in login_page.get_data(as_text=True)
    uid = login_page.request.path.split("/")[2]

    page = ask(browser, PHONE, url=ISSUER + link.group(1))
    assert page.status_code == 200 and page.request.path == CODE_PAGE
    page = set_password(browser, enter_code(browser, page, reset_codes(sms, PHONE)[-1]), NEW_PASSWORD)
    assert page.request.path == f"/interaction/{uid}/login"
    assert "Your password was changed. Log in with your new password." in page.get_data(as_text=True)
    answer = browser.login(page, PHONE, NEW_PASSWORD)
    if answer.status_code == 200:  # the consent page, if the site asks for it
        answer = browser.approve(answer)
    tokens = rp.exchange(code_from(answer, request), request)
    assert tokens.status_code == 200


def test_the_hub_login_page_links_to_the_reset(app):
    page = new_browser(app).go(f"{ISSUER}/account/login")
    assert 'href="/password/forgot"' in page.get_data(as_text=True)


# --- refusals ------------------------------------------------------------------------------------

def test_wrong_expired_and_reused_codes_are_refused(app, sms):
    make_account(app, phone=PHONE)
    browser = new_browser(app)
    page = ask(browser, PHONE)
    [code] = reset_codes(sms, PHONE)
    wrong = enter_code(browser, page, other_than(code))
    assert wrong.status_code == 401 and "invalid or expired code" in wrong.get_data(as_text=True)

    with app.app_context():  # the code expires
        db.session.execute(update(OtpChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    expired = enter_code(browser, wrong, code)
    assert expired.status_code == 401 and "invalid or expired code" in expired.get_data(as_text=True)

    page = ask(browser, PHONE)
    code = reset_codes(sms, PHONE)[-1]
    with browser.http.session_transaction() as state:
        pending = dict(state["recovery"])
    assert enter_code(browser, page, code).request.path.startswith("/password/reset/")
    with browser.http.session_transaction() as state:  # the same challenge again
        state["recovery"] = pending
    reused = enter_code(browser, browser.go(ISSUER + CODE_PAGE), code)
    assert reused.status_code == 401 and "invalid or expired code" in reused.get_data(as_text=True)
    assert logs_in(app, PASSWORD)


def test_a_code_locks_after_too_many_wrong_tries(app, sms):
    make_account(app, phone=PHONE)
    browser = new_browser(app)
    page = ask(browser, PHONE)
    [code] = reset_codes(sms, PHONE)
    for _ in range(app.config["TESSERA_OTP_MAX_ATTEMPTS"]):
        page = enter_code(browser, page, other_than(code))
    assert enter_code(browser, page, code).status_code == 401  # even the right code now


def test_a_tampered_or_expired_link_is_refused(app, sms):
    make_account(app, phone=PHONE, email=EMAIL)
    browser = new_browser(app)
    ask(browser, EMAIL)
    link = sms.mails(EMAIL)[-1]["link"]
    tampered = browser.go(link[:-2] + ("AA" if not link.endswith("AA") else "BB"))
    assert tampered.status_code == 400 and "not valid" in tampered.get_data(as_text=True)
    assert browser.go(f"{ISSUER}/password/reset/nonsense").status_code == 400

    page = browser.go(link)
    app.config["TESSERA_PASSWORD_RESET_TTL"] = 0
    try:
        time.sleep(1.1)  # a second later the link is older than the TTL
        expired = set_password(browser, page, NEW_PASSWORD)
    finally:
        app.config["TESSERA_PASSWORD_RESET_TTL"] = 30 * 60
    assert expired.status_code == 400 and "has expired" in expired.get_data(as_text=True)
    assert logs_in(app, PASSWORD)


def test_the_new_password_follows_the_rules_and_the_link_stays_good(app, sms):
    make_account(app, phone=PHONE, email=EMAIL)
    browser = new_browser(app)
    ask(browser, EMAIL)
    page = browser.go(sms.mails(EMAIL)[-1]["link"])
    for password, confirm, message in [
        ("short", None, "at least 8 characters"),
        ("Password123", None, "one of the most common ones"),
        ("QWERTYUIOP", None, "one of the most common ones"),  # case-insensitive
        (EMAIL.upper(), None, "cannot be your phone number, email address or username"),
        ("4155550100", None, "cannot be your phone number"),
        (NEW_PASSWORD, "something else", "the two passwords are not the same"),
    ]:
        refused = set_password(browser, page, password, confirm)
        assert refused.status_code == 400 and message in refused.get_data(as_text=True), password
    assert logs_in(app, PASSWORD)
    assert "Your password was changed" in set_password(browser, page, NEW_PASSWORD).get_data(as_text=True)


def test_a_reset_of_a_dormant_account_by_phone_sends_nothing(app, sms):
    me = make_account(app, phone=PHONE, email=EMAIL)
    set_account(app, me, last_login_at=utcnow() - timedelta(days=400), created_at=utcnow() - timedelta(days=800))
    browser = new_browser(app)
    page = ask(browser, PHONE)
    assert page.request.path == CODE_PAGE and reset_codes(sms, PHONE) == []  # the number may be recycled
    ask(browser, EMAIL)
    assert len(sms.mails(EMAIL)) == 1  # the verified email still works


# --- the same answer for everyone ------------------------------------------------------------------

@pytest.fixture
def people(app):
    """Phones and emails of: an active account (verified), an unverified one, a locked and a closed
    account, and nobody."""
    make_account(app, phone="+14155550131", email="known@example.com")
    make_account(app, phone="+14155550132", email="unverified@example.com", verified=False)
    locked = make_account(app, phone="+14155550133", email="locked@example.com")
    closed = make_account(app, phone="+14155550134", email="closed@example.com")
    set_account(app, locked, status="locked")
    set_account(app, closed, status="closed")
    return {"known": ("+14155550131", "known@example.com"), "unverified": ("+14155550132", "unverified@example.com"),
            "locked": ("+14155550133", "locked@example.com"), "closed": ("+14155550134", "closed@example.com"),
            "unknown": ("+14155550135", "nobody@example.com")}


def test_every_phone_gets_the_same_answers_and_only_a_way_in_a_code(app, sms, people):
    seen = {}
    for who, (phone, _) in people.items():
        browser = new_browser(app)
        asked = browser.http.post("/password/forgot", data={
            "login": phone, "csrf_token": CSRF_RE.search(browser.go(f"{ISSUER}/password/forgot")
                                                         .get_data(as_text=True)).group(1)})
        page = browser.go(ISSUER + asked.location)
        code = (reset_codes(sms, phone) or [None])[-1]
        wrong = enter_code(browser, page, other_than(code))
        seen[who] = (asked.status_code, asked.location, page.status_code, without_csrf(page),
                     wrong.status_code, without_csrf(wrong))
    assert all(answers == seen["known"] for answers in seen.values()), seen
    assert seen["known"][:3] == (303, CODE_PAGE, 200) and seen["known"][4] == 401
    assert {who: bool(reset_codes(sms, phone)) for who, (phone, _) in people.items()} == {
        "known": True, "unverified": False, "locked": False, "closed": False, "unknown": False}


def test_every_email_gets_the_same_answer_and_only_a_way_in_a_link(app, sms, people):
    seen = {}
    for who, (_, email) in people.items():
        answer = ask(new_browser(app), email)
        seen[who] = (answer.status_code, without_csrf(answer))
    assert all(answer == seen["known"] for answer in seen.values()) and seen["known"][0] == 200
    assert {who: len(sms.mails(email)) for who, (_, email) in people.items()} == {
        "known": 1, "unverified": 0, "locked": 0, "closed": 0, "unknown": 0}


def test_something_that_is_neither_a_phone_nor_an_email(app):
    answer = ask(new_browser(app), "some-username")
    assert answer.status_code == 400 and "phone number or the email address" in answer.get_data(as_text=True)


# --- budgets ---------------------------------------------------------------------------------------

def test_requests_for_one_number_or_address_run_out_alike_known_or_not(app, budgets, sms, people):
    budgets(TESSERA_SMS_BUDGET_NUMBER="2 per hour", TESSERA_MAIL_BUDGET_RECIPIENT="2 per hour")
    for phone, email in (people["known"], people["unknown"]):
        browser = new_browser(app)
        for identifier, spent in ((phone, "too many codes were sent"), (email, "too many messages were sent")):
            assert [ask(browser, identifier).status_code for _ in range(2)] == [200, 200]
            refused = ask(browser, identifier)
            assert refused.status_code == 429 and spent in refused.get_data(as_text=True)
            assert int(refused.headers["Retry-After"]) > 0 and "Too many requests" in refused.get_data(as_text=True)
    assert len(reset_codes(sms, people["known"][0])) == 2 and len(sms.mails(people["known"][1])) == 2


def test_guessing_codes_runs_out_alike_known_or_not(app, budgets, sms, people):
    budgets(TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
    answers = {}
    for who in ("known", "unknown"):
        browser = new_browser(app)
        page = ask(browser, people[who][0])
        code = (reset_codes(sms, people[who][0]) or [None])[-1]
        answers[who] = [enter_code(browser, page, other_than(code)).status_code for _ in range(4)]
    assert answers == {"known": [401, 401, 401, 429], "unknown": [401, 401, 401, 429]}
