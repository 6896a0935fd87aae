"""Log in and sign up by phone with a one-time code, through the interaction pages: codes locked
after n wrong tries, expiring, single use; send limits per phone and per address; the same
answers for registered and unregistered numbers; the carrier-recycled number rule; the webhook
SMS sender against a real socket."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update

from app.accounts.models import Account, AuditEvent, Identity, OtpChallenge
from app.accounts.otp import send_code, verify_code
from app.errors import AuthenticationFailed, InvalidInput
from app.extensions import db
from app.security import utcnow
from tests.accounts.conftest import new_phone
from tests.conftest import ISSUER
from tests.rp import RelyingParty, code_from, csrf_token, query_of

CODE_FAILURE = "invalid or expired code"


@pytest.fixture
def rp(factories, http):
    return RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def id_token_of(rp, browser, response) -> dict:
    """The claims of the ID token the client gets for the code in ``response``."""
    tokens = rp.exchange(code_from(response, browser.auth_request), browser.auth_request).get_json()
    return rp.validate_id_token(tokens["id_token"])


def audit_kinds(app, account_id: int) -> list[tuple[str, dict]]:
    with app.app_context():
        events = db.session.scalars(db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.id))
        return [(e.kind, e.details) for e in events]


def phone_identities(app, phone: str) -> list[Identity]:
    with app.app_context():
        return list(db.session.scalars(db.select(Identity).filter_by(kind="phone", value=phone).order_by(Identity.id)))


def make_dormant(app, account_id: int, days: int = 400) -> None:
    with app.app_context():
        long_ago = utcnow() - timedelta(days=days)
        db.session.execute(update(Account).where(Account.id == account_id).values(last_login_at=long_ago, created_at=long_ago))
        db.session.commit()


# --- sign up, log in ---------------------------------------------------------------------------
def test_sign_up_by_phone_then_log_in_again_by_code(app, outbox, rp, otp_browser, new_browser):
    phone = new_phone()
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), "(206) 555-" + phone[-4:])
    assert code_page.status_code == 200 and "Enter your code" in code_page.get_data(as_text=True)
    assert outbox.texts(phone)[-1]["purpose"] == "register"
    signup = otp_browser.enter_code(code_page, outbox.code(phone))
    assert signup.status_code == 200 and "Create your account" in signup.get_data(as_text=True)
    response = otp_browser.submit(signup, {"name": "Ada", "password": "a long enough secret", "submit": "Create account"})
    claims = id_token_of(rp, otp_browser, response)
    assert claims["amr"] == ["sms"]

    [identity] = phone_identities(app, phone)
    assert identity.verified and identity.released_at is None and identity.last_used_at is not None
    with app.app_context():
        account = db.session.get(Account, identity.account_id)
        assert account.name == "Ada" and account.password_hash and account.last_login_at is not None
    kinds = audit_kinds(app, identity.account_id)
    assert ("account.created", {"method": "otp", "identity": "phone"}) in kinds
    assert any(k == "login.success" and d["method"] == "otp" for k, d in kinds)

    # Again, in another browser: the code logs straight in, to the same account.
    again = new_browser()
    response = again.enter_code(again.send_code(again.otp_page(rp), phone), outbox.code(phone))
    assert outbox.texts(phone)[-1]["purpose"] == "login"
    assert id_token_of(rp, again, response)["sub"] == claims["sub"]
    # And the optional password chosen at sign-up works on the password form.
    third = new_browser()
    response = third.login(third.start(rp), phone, "a long enough secret")
    assert id_token_of(rp, third, response)["sub"] == claims["sub"]


def test_sign_up_without_name_or_password(app, outbox, rp, otp_browser):
    phone = new_phone()
    signup = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), phone), "")
    assert signup.status_code == 200  # an empty code is not checked: the form asks again
    signup = otp_browser.enter_code(signup, outbox.code(phone))
    response = otp_browser.submit(signup, {"submit": "Create account"})
    assert "code" in query_of(response.location)
    [identity] = phone_identities(app, phone)
    with app.app_context():
        assert db.session.get(Account, identity.account_id).password_hash is None


def test_short_password_at_sign_up_is_refused_and_the_proof_still_holds(app, outbox, rp, otp_browser):
    phone = new_phone()
    signup = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), phone), "")
    signup = otp_browser.enter_code(signup, outbox.code(phone))
    refused = otp_browser.submit(signup, {"password": "short", "submit": "Create account"})
    assert refused.status_code == 400 and "at least 8" in refused.get_data(as_text=True)
    assert phone_identities(app, phone) == []
    response = otp_browser.submit(refused, {"password": "long enough now", "submit": "Create account"})
    assert "code" in query_of(response.location)


def test_existing_account_logs_in_by_code(app, factories, outbox, rp, otp_browser):
    account = factories.account(phone=new_phone())
    response = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), account.phone),
                                      outbox.code(account.phone))
    assert id_token_of(rp, otp_browser, response)["amr"] == ["sms"]
    kinds = audit_kinds(app, account.id)
    assert ("login.success", {"method": "otp", "identity": "phone"}) in kinds
    with app.app_context():
        assert db.session.get(Account, account.id).last_login_at is not None


def test_code_login_replaces_another_accounts_session(app, factories, outbox, rp, otp_browser):
    first = factories.account()
    response = otp_browser.login(otp_browser.start(rp), first.phone, first.password)
    first_sub = id_token_of(rp, otp_browser, response)["sub"]
    second = factories.account(phone=new_phone())
    page = otp_browser.otp_page(rp, prompt="login")
    response = otp_browser.enter_code(otp_browser.send_code(page, second.phone), outbox.code(second.phone))
    assert id_token_of(rp, otp_browser, response)["sub"] != first_sub
    with app.app_context():
        from app.oidc.models import SSOSession

        sessions = db.session.scalars(db.select(SSOSession).order_by(SSOSession.id)).all()
        assert [s.ended_at is not None for s in sessions] == [True, False]


# --- the code: attempts, expiry, single use ------------------------------------------------------
def test_nth_wrong_code_locks_the_code(app, factories, outbox, rp, otp_browser):
    account = factories.account(phone=new_phone())
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), account.phone)
    code = outbox.code(account.phone)
    attempts = app.config["TESSERA_OTP_MAX_ATTEMPTS"]
    for _ in range(attempts):
        answer = otp_browser.enter_code(code_page, wrong(code))
        assert answer.status_code == 401 and CODE_FAILURE in answer.get_data(as_text=True)
    # Locked: now even the right code fails, with the same answer.
    answer = otp_browser.enter_code(code_page, code)
    assert answer.status_code == 401 and CODE_FAILURE in answer.get_data(as_text=True)
    assert "tessera_session" not in answer.headers.get("Set-Cookie", "")
    with app.app_context():
        challenge = db.session.scalar(db.select(OtpChallenge).filter_by(phone=account.phone))
        assert challenge.attempts == attempts and challenge.locked_at and challenge.consumed_at is None
        assert challenge.code_hash != code and code not in challenge.code_hash  # stored hashed
    kinds = [k for k, _ in audit_kinds(app, account.id)]
    assert kinds.count("login.failure") == attempts + 1 and "otp.locked" in kinds and "login.success" not in kinds


def test_one_wrong_code_less_than_the_limit_still_lets_the_right_code_in(app, factories, outbox, rp, otp_browser):
    account = factories.account(phone=new_phone())
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), account.phone)
    code = outbox.code(account.phone)
    for _ in range(app.config["TESSERA_OTP_MAX_ATTEMPTS"] - 1):
        otp_browser.enter_code(code_page, wrong(code))
    assert "code" in query_of(otp_browser.enter_code(code_page, code).location)


def test_expired_code_fails(app, factories, outbox, rp, otp_browser):
    account = factories.account(phone=new_phone())
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), account.phone)
    with app.app_context():
        db.session.execute(update(OtpChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    answer = otp_browser.enter_code(code_page, outbox.code(account.phone))
    assert answer.status_code == 401 and CODE_FAILURE in answer.get_data(as_text=True)


def test_code_is_single_use_and_bound_to_its_purpose(app, outbox):
    phone = new_phone()
    with app.test_request_context():
        challenge = send_code(phone, "bind", account_id=None)
        code = outbox.code(phone)
        with pytest.raises(AuthenticationFailed, match=CODE_FAILURE):
            verify_code(challenge.uid, code, "login")  # another purpose: refused (and counted)
        assert verify_code(challenge.uid, code, "bind").consumed_at is not None
        with pytest.raises(AuthenticationFailed, match=CODE_FAILURE):
            verify_code(challenge.uid, code, "bind")
        with pytest.raises(AuthenticationFailed, match=CODE_FAILURE):
            verify_code("no-such-challenge", code, "bind")
        with pytest.raises(InvalidInput):
            send_code("12", "login")
        with pytest.raises(InvalidInput):
            send_code(phone, "dance")


def test_a_bind_code_cannot_log_in(app, factories, outbox, rp, otp_browser):
    """The page accepts only login/register challenges: a code sent for another purpose (here a
    bind code whose uid an attacker put in the browser session) does not open the account."""
    account = factories.account(phone=new_phone())
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), account.phone)
    with app.test_request_context():
        bind = send_code(account.phone, "bind", account_id=account.id)
    with otp_browser.http.session_transaction() as flask_session:
        flask_session["otp"] = dict(flask_session["otp"], challenge=bind.uid)
    answer = otp_browser.enter_code(code_page, outbox.code(account.phone))
    assert answer.status_code == 401


def test_code_page_without_a_sent_code_starts_over(outbox, rp, otp_browser):
    page = otp_browser.otp_page(rp)
    uid = page.request.path.split("/")[2]
    response = otp_browser.http.get(f"/interaction/{uid}/otp/code")
    assert response.status_code == 302 and response.location.endswith(f"/interaction/{uid}/otp")


def test_forms_need_their_csrf_token(outbox, rp, otp_browser):
    page = otp_browser.otp_page(rp)
    response = otp_browser.http.post(page.request.url, data={"phone": new_phone(), "submit": "Send code"})
    assert response.status_code == 400


# --- send limits ------------------------------------------------------------------------------
def test_per_phone_send_limit(budgets, factories, outbox, rp, otp_browser, new_browser):
    budgets(TESSERA_SMS_BUDGET_NUMBER="3 per hour")
    account = factories.account(phone=new_phone())
    statuses = []
    for _ in range(4):  # from different browsers: the limit is the number's, not the browser's
        browser = new_browser()
        statuses.append(browser.send_code(browser.otp_page(rp), account.phone).status_code)
    assert statuses == [200, 200, 200, 429]
    assert "too many codes" in browser.last_page.get_data(as_text=True)
    assert len(outbox.texts(account.phone)) == 3
    other = new_phone()
    assert otp_browser.send_code(otp_browser.otp_page(rp), other).status_code == 200


def test_per_address_send_limit(budgets, outbox, rp, otp_browser):
    budgets(TESSERA_SMS_BUDGET_ADDRESS="2 per minute")
    otp_browser.http.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    page = otp_browser.otp_page(rp)
    statuses = [otp_browser.send_code(page, new_phone()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


# --- no user enumeration ------------------------------------------------------------------------
def _scrub(html: str, uid: str) -> str:
    return html.replace(csrf_token(html), "CSRF").replace(uid, "UID")


def test_registered_and_unregistered_numbers_get_the_same_answers(factories, outbox, rp, new_browser):
    registered = factories.account(phone=new_phone()).phone
    unregistered = new_phone()
    answers = []
    for phone in (registered, unregistered):
        browser = new_browser()
        page = browser.otp_page(rp)
        uid = page.request.path.split("/")[2]
        posted = browser.http.post(page.request.url, data={
            "phone": phone, "submit": "Send code", "csrf_token": csrf_token(page.get_data(as_text=True))})
        code_page = browser.go(ISSUER + posted.location)
        answers.append((posted.status_code, posted.location.replace(uid, "UID"),
                        _scrub(posted.get_data(as_text=True), uid) if "csrf_token" in posted.get_data(as_text=True)
                        else posted.get_data(as_text=True).replace(uid, "UID"),
                        code_page.status_code, _scrub(code_page.get_data(as_text=True), uid)))
        # A wrong code: the same answer too.
        failed = browser.enter_code(code_page, "000000" if outbox.code(phone) != "000000" else "111111")
        answers[-1] += (failed.status_code, _scrub(failed.get_data(as_text=True), uid))
    assert answers[0] == answers[1]
    assert answers[0][0] == 303 and answers[0][3] == 200
    # Both numbers got a code (a login code and a register code, worded alike).
    [to_registered], [to_unregistered] = outbox.texts(registered), outbox.texts(unregistered)
    assert (to_registered["purpose"], to_unregistered["purpose"]) == ("login", "register")


# --- carrier-recycled numbers -------------------------------------------------------------------
def test_code_alone_does_not_open_a_dormant_account(app, factories, outbox, rp, otp_browser):
    old = factories.account(phone=new_phone(), email="old-owner@example.com")
    make_dormant(app, old.id)
    page = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), old.phone), outbox.code(old.phone))
    assert page.status_code == 200 and "Is this your account?" in page.get_data(as_text=True)
    assert otp_browser.http.get_cookie("tessera_session") is None
    # No hub session: a silent request still needs a login.
    response = otp_browser.go(rp.authorization_request(prompt="none").url)
    assert query_of(response.location)["error"] == "login_required"
    refused = otp_browser.submit(page, {"password": "not the password", "submit": "Log in"})
    assert refused.status_code == 401 and otp_browser.http.get_cookie("tessera_session") is None


def test_dormant_account_owner_gets_in_with_code_and_password(app, factories, outbox, rp, otp_browser):
    old = factories.account(phone=new_phone())
    make_dormant(app, old.id)
    page = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), old.phone), outbox.code(old.phone))
    response = otp_browser.submit(page, {"password": old.password, "submit": "Log in"})
    assert id_token_of(rp, otp_browser, response)["amr"] == ["mfa", "pwd", "sms"]
    with app.app_context():
        account = db.session.get(Account, old.id)
        assert account.last_login_at > utcnow() - timedelta(minutes=1)  # not dormant any more
    assert ("login.success", {"method": "otp+pwd", "identity": "phone"}) in audit_kinds(app, old.id)


def test_newcomer_on_a_recycled_number_starts_fresh(app, factories, outbox, rp, otp_browser, new_browser):
    old = factories.account(phone=new_phone(), email="previous-owner@example.com", name="Previous")
    make_dormant(app, old.id)
    page = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), old.phone), outbox.code(old.phone))
    uid = page.request.path.split("/")[2]
    response = otp_browser.submit(page, {"name": "Newcomer", "submit": "Start a new account"},
                                  url=f"{ISSUER}/interaction/{uid}/otp/fresh")
    new_sub = id_token_of(rp, otp_browser, response)["sub"]

    released, live = phone_identities(app, old.phone)
    assert released.account_id == old.id and released.released_at is not None
    assert live.account_id != old.id and live.released_at is None and live.verified
    with app.app_context():
        previous = db.session.get(Account, old.id)
        assert previous.status == "active" and previous.name == "Previous"  # data kept, other identity kept
        assert [(i.kind, i.value) for i in previous.identities] == [("email", "previous-owner@example.com")]
        assert db.session.get(Account, live.account_id).name == "Newcomer"
    assert ("identity.released", {"identity": "phone", "value": old.phone, "reason": "recycled_number"}) in audit_kinds(app, old.id)
    # The previous owner still logs in with the email and password, to the old account.
    owner = new_browser()
    response = owner.login(owner.start(rp), "previous-owner@example.com", old.password)
    assert id_token_of(rp, owner, response)["sub"] != new_sub
    # The newcomer's next code logs straight in to the new account.
    again = new_browser()
    response = again.enter_code(again.send_code(again.otp_page(rp), old.phone), outbox.code(old.phone))
    assert id_token_of(rp, again, response)["sub"] == new_sub


def test_recycled_number_that_was_the_only_identity_locks_the_dormant_account(app, factories, outbox, rp, otp_browser):
    old = factories.account(phone=new_phone())
    make_dormant(app, old.id)
    page = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), old.phone), outbox.code(old.phone))
    uid = page.request.path.split("/")[2]
    response = otp_browser.submit(page, {"submit": "Start a new account"}, url=f"{ISSUER}/interaction/{uid}/otp/fresh")
    assert "code" in query_of(response.location)
    with app.app_context():
        assert db.session.get(Account, old.id).status == "locked"
    assert "account.locked" in [k for k, _ in audit_kinds(app, old.id)]


def test_recently_used_account_is_not_dormant(app, factories, outbox, rp, otp_browser):
    old = factories.account(phone=new_phone())
    make_dormant(app, old.id, days=app.config["TESSERA_DORMANT_DAYS"] - 1)
    response = otp_browser.enter_code(otp_browser.send_code(otp_browser.otp_page(rp), old.phone), outbox.code(old.phone))
    assert "code" in query_of(response.location)


def test_console_sender_logs_the_code(app, caplog, monkeypatch):
    monkeypatch.setitem(app.config, "TESSERA_SMS_SENDER", "console")
    phone = new_phone()
    with app.test_request_context(), caplog.at_level("WARNING", logger="tessera.sms"):
        challenge = send_code(phone, "login")
    [record] = [r for r in caplog.records if r.name == "tessera.sms"]
    code = re.search(r"(\d{6})$", record.getMessage()).group(1)
    assert record.levelname == "WARNING" and f"OTP for {phone}" in record.getMessage()
    with app.test_request_context():
        assert verify_code(challenge.uid, code, "login").consumed_at is not None


# --- the webhook sender ---------------------------------------------------------------------------
class SmsGateway:
    """A stand-in SMS gateway on a real socket: records the JSON it is POSTed."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.received.append({"content_type": self.headers.get("Content-Type"), "json": json.loads(body)})
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/sms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(app):
    gateway = SmsGateway()
    saved = app.config["TESSERA_SMS_SENDER"], app.config["TESSERA_SMS_WEBHOOK_URL"]
    app.config.update(TESSERA_SMS_SENDER="webhook", TESSERA_SMS_WEBHOOK_URL=gateway.url)
    yield gateway
    app.config["TESSERA_SMS_SENDER"], app.config["TESSERA_SMS_WEBHOOK_URL"] = saved
    gateway.close()


def test_webhook_sender_posts_the_code_to_the_gateway(app, gateway, factories, rp, otp_browser):
    account = factories.account(phone=new_phone())
    code_page = otp_browser.send_code(otp_browser.otp_page(rp), account.phone)
    assert code_page.status_code == 200
    [request] = gateway.received
    message = request["json"]
    assert request["content_type"] == "application/json"
    assert set(message) == {"phone", "message", "code", "purpose"}
    assert message["phone"] == account.phone and message["purpose"] == "login"
    assert re.fullmatch(r"\d{6}", message["code"]) and message["code"] in message["message"]
    response = otp_browser.enter_code(code_page, message["code"])
    assert "code" in query_of(response.location)


def test_webhook_failure_keeps_no_code(app, gateway, rp, otp_browser):
    gateway.status = 500
    page = otp_browser.send_code(otp_browser.otp_page(rp), new_phone())
    assert page.status_code == 503 and "could not be sent" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(OtpChallenge)) == 0


def test_webhook_url_is_checked_against_private_addresses(app, gateway, rp, otp_browser):
    app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = False
    try:
        page = otp_browser.send_code(otp_browser.otp_page(rp), new_phone())
    finally:
        app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = True
    assert page.status_code == 503 and gateway.received == []
