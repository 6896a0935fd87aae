"""Operators resetting a password, revoking consents and tokens, closing an account and exporting a
person's data (`tessera users reset-password|revoke|close|export`, app.accounts.operator_actions and
data_export), run through the app's CLI runner and seen through HTTP: logins, /token, /userinfo,
the back-channel logout delivered, the SMS and mail the person gets, their security history."""

from __future__ import annotations

import json
import subprocess

import pytest

from app.accounts.models import Account
from app.accounts.operator_actions import close, reset_password, revoke_access
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.errors import InvalidInput
from app.extensions import db
from app.oidc.models import Consent, SSOSession, Token
from app.tenants.models import Tenant
from app.worker import run_once
from tests.accounts.test_binding import PHONE, hub_login, make_account
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import Browser, RelyingParty, authorize, code_from
from tests.test_cli import TESSERA, _env, migrated_template, tessera  # noqa: F401 (the fixtures)

EMAIL = "li.lei@example.com"
NEW_PASSWORD = "a brand new passphrase"


def cli(app, *args: str, input: str | None = None):  # noqa: A002 (click's name)
    return app.test_cli_runner().invoke(args=list(args), input=input)


def cli_json(app, *args: str, input: str | None = None):  # noqa: A002
    result = cli(app, *args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


class Person:
    phone, password = PHONE, PASSWORD


def signed_in_at(http, factories, receiver=None, browser: Browser | None = None) -> tuple[RelyingParty, Browser, dict]:
    """A client (with a back-channel logout URI when ``receiver``), the person's browser logged in
    there, and the tokens the client got (with a refresh token)."""
    extra = {"backchannel_logout_uri": f"{receiver.url}/bc"} if receiver is not None else {}
    rp = RelyingParty.for_client(http, ISSUER, factories.client(**extra))
    browser = browser or Browser(http, ISSUER)
    request, response = authorize(browser, rp, Person, scope="openid offline_access")
    answer = rp.exchange(code_from(response, request), request)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return rp, browser, answer.get_json()


def logs_in(app, password: str) -> bool:
    browser = Browser(app.test_client(), ISSUER)
    page = browser.submit(browser.go(f"{ISSUER}/account/login"), {"login": PHONE, "password": password, "submit": "Log in"})
    return "Ways to log in" in page.get_data(as_text=True)


def operator_events(app, account_id: int) -> list[dict]:
    result = cli(app, "audit", "search", "--account", str(account_id), "--actor", "operator:*", "--json")
    return [json.loads(line) for line in result.output.splitlines()]


# --- reset-password ------------------------------------------------------------------------------

def test_reset_password_ends_sessions_revokes_tokens_tells_clients_and_the_person(app, http, factories, receiver, outbox):
    me = make_account(app, phone=PHONE, email=EMAIL)
    rp, browser, tokens = signed_in_at(http, factories, receiver)
    other_browser = hub_login(app, PHONE)

    reset = cli_json(app, "users", "reset-password", PHONE, "--password-stdin", input=NEW_PASSWORD + "\n")
    assert reset["account"]["id"] == me and reset["password"] is None
    assert (reset["sessions_ended"], reset["tokens_revoked"]) == (2, 1)
    assert (reset["notified"], reset["not_notified"]) == (["email", "sms"], [])

    assert not logs_in(app, PASSWORD) and logs_in(app, NEW_PASSWORD)
    for b in (browser, other_browser):
        assert "Log in to see" in b.go(f"{ISSUER}/account/").get_data(as_text=True)  # the cookies are dead
    refused = rp.refresh(tokens["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    with app.app_context():
        run_once()
    assert [r["path"] for r in receiver.requests] == ["/bc"]

    [sms] = outbox.texts(PHONE)
    [mail] = outbox.mails(EMAIL)
    for text in (sms["message"], mail["body"]):
        assert "An operator reset the password of your account" in text and NEW_PASSWORD not in text
    assert sms["code"] is None and sms["purpose"] == "password_reset" and mail["subject"] == "Your password was reset"

    page = hub_login(app, PHONE, NEW_PASSWORD).go(f"{ISSUER}/account/").get_data(as_text=True)
    assert "account.password_reset" in page  # the person's security history
    [event] = operator_events(app, me)
    assert event["kind"] == "account.password_reset" and event["actor"] == "operator:cli"
    assert event["details"] == {"generated": False, "sessions_ended": 2, "tokens_revoked": 1,
                                "notify": ["email", "sms"]}
    with app.app_context():
        stored = db.session.get(Account, me).password_hash
    assert stored.startswith("$argon2id$") and NEW_PASSWORD not in stored


def test_a_generated_password_is_printed_once_and_works(app, outbox):
    me = make_account(app, phone=PHONE, email=EMAIL, verified=False)  # nothing verified to tell
    result = cli(app, "users", "reset-password", str(me), "--generate")
    assert result.exit_code == 0, result.output
    password = result.output.split("new password (shown once): ")[1].split()[0]
    assert len(password) == 19 and "nobody (no verified phone or email)" in result.output
    assert outbox.texts(PHONE) == [] and outbox.mails(EMAIL) == []
    with app.app_context():  # the phone was unverified: verify it to log in with a password
        db.session.get(Account, me).identity("phone").verified = True
        db.session.commit()
    assert logs_in(app, password) and not logs_in(app, PASSWORD)
    again = cli_json(app, "users", "reset-password", PHONE, "--generate")
    assert again["password"] != password and logs_in(app, again["password"]) and again["notified"] == ["sms"]
    [sms] = outbox.texts(PHONE)
    assert sms["code"] is None and again["password"] not in sms["message"]


def test_a_locked_account_without_a_way_in_is_recovered_by_a_new_password(app):
    me = make_account(app, phone=PHONE, email=EMAIL, password=None)
    with app.app_context():  # the recycled-number rule took its phone: only an (verified) email left
        account = db.session.get(Account, me)
        account.status = "locked"
        phone = next(i for i in account.identities if i.kind == "phone")
        phone.released_at = phone.created_at
        db.session.commit()
    assert cli(app, "users", "unlock", str(me)).exit_code == 1  # no way in
    cli_json(app, "users", "reset-password", str(me), "--password-stdin", input=NEW_PASSWORD)
    assert cli_json(app, "users", "unlock", EMAIL)["status"] == "active"


def test_reset_password_refusals_change_nothing(app):
    me = make_account(app, phone=PHONE)
    closed = make_account(app, phone="+14155550177")
    with app.app_context():
        db.session.get(Account, closed).status = "closed"
        db.session.commit()
    for args, stdin, message in [
        ((PHONE, "--password-stdin"), "short\n", "at least 8 characters"),
        ((PHONE, "--password-stdin"), "x" * 1025, "at most 1024 characters"),
        ((PHONE, "--password-stdin"), "", "at least 8 characters"),
        ((PHONE,), None, "exactly one of --password-stdin and --generate"),
        ((PHONE, "--password-stdin", "--generate"), NEW_PASSWORD, "exactly one of"),
        (("+14155550999", "--generate"), None, "no account '+14155550999'"),
        (("99999999999999999999", "--generate"), None, "no account"),
        ((str(closed), "--generate"), None, f"account {closed} is closed"),
    ]:
        result = cli(app, "users", "reset-password", *args, "--json", input=stdin)
        assert result.exit_code == 1 and message in json.loads(result.output.splitlines()[-1])["error"], (args, result.output)
    assert logs_in(app, PASSWORD) and operator_events(app, me) == []


# --- revoke --------------------------------------------------------------------------------------

def test_revoke_one_client_then_every_client(app, http, factories):
    me = make_account(app, phone=PHONE)
    shop, browser, shop_tokens = signed_in_at(http, factories)
    bank, _, bank_tokens = signed_in_at(http, factories, browser=browser)
    assert len(cli_json(app, "users", "show", str(me))["consents"]) == 2

    one = cli_json(app, "users", "revoke", PHONE, "--client", shop.client_id)
    assert one == {"account": me, "client": shop.client_id, "consents_removed": 1, "tokens_revoked": 1}
    assert shop.refresh(shop_tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert shop.userinfo(shop_tokens["access_token"]).status_code == 401
    refreshed = bank.refresh(bank_tokens["refresh_token"])
    assert refreshed.status_code == 200  # the other client keeps its access
    assert [c["client"] for c in cli_json(app, "users", "show", str(me))["consents"]] == [bank.client_id]

    result = cli(app, "users", "revoke", str(me))
    assert result.exit_code == 0 and "1 consent(s) removed, 2 token(s) revoked" in result.output
    assert bank.refresh(refreshed.get_json()["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert bank.userinfo(refreshed.get_json()["access_token"]).status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Consent)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(Token).filter_by(revoked_at=None)) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(SSOSession).filter_by(ended_at=None)) == 1
    assert "account.consents_revoked" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)  # still logged in
    events = operator_events(app, me)
    assert [(e["kind"], e["client"], e["details"]) for e in events] == [
        ("account.consents_revoked", None, {"consents_removed": 1, "tokens_revoked": 2}),
        ("account.consents_revoked", shop.client_id, {"consents_removed": 1, "tokens_revoked": 1}),
    ]
    assert cli_json(app, "users", "revoke", str(me))["tokens_revoked"] == 0  # nothing left: not an error


def test_revoke_refusals(app):
    make_account(app, phone=PHONE)
    for args, message in [((PHONE, "--client", "nope"), "no client 'nope'"), (("404",), "no account '404'")]:
        result = cli(app, "users", "revoke", *args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


# --- close ---------------------------------------------------------------------------------------

def test_close_is_the_persons_own_close_with_the_operators_reason(app, http, factories, receiver):
    me = make_account(app, phone=PHONE, email=EMAIL)
    rp, browser, tokens = signed_in_at(http, factories, receiver)

    closed = cli_json(app, "users", "close", PHONE, "--reason", "asked by letter, ref 42")
    assert closed["account"]["status"] == "closed"
    assert (closed["sessions_ended"], closed["tokens_revoked"], closed["consents_removed"]) == (1, 1, 1)
    assert "Log in to see" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)
    assert not logs_in(app, PASSWORD)
    assert rp.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    with app.app_context():
        run_once()
    assert [r["path"] for r in receiver.requests] == ["/bc"]

    shown = cli_json(app, "users", "show", str(me))
    assert shown["closed_at"] and all(i["released_at"] is None for i in shown["identities"])  # cooling-off
    [event] = operator_events(app, me)
    assert event["kind"] == "account.deregistered" and event["details"]["reason"] == "asked by letter, ref 42"
    assert event["details"]["release_after_days"] == app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"]

    again = cli(app, "users", "close", str(me), "--reason", "again")
    assert again.exit_code == 1 and f"account {me} is closed" in again.output


def test_close_a_locked_account_and_the_refusals(app):
    me = make_account(app, phone=PHONE)
    missing = cli(app, "users", "close", PHONE)
    assert missing.exit_code == 2 and "Missing option '--reason'" in missing.output
    for reason, message in [(" ", "a reason is required"), ("x" * 501, "at most 500 characters")]:
        result = cli(app, "users", "close", PHONE, "--reason", reason)
        assert result.exit_code == 1 and message in result.output
    assert cli(app, "users", "close", "+14155550999", "--reason", "x").exit_code == 1
    assert cli(app, "users", "lock", PHONE, "--reason", "fraud").exit_code == 0
    assert cli(app, "users", "close", PHONE, "--reason", "fraud confirmed").exit_code == 0
    with app.app_context():
        assert db.session.get(Account, me).status == "closed"


# --- export --------------------------------------------------------------------------------------

def test_export_holds_the_persons_data_and_no_secret(app, http, factories):
    me = make_account(app, phone=PHONE, email=EMAIL, name="Li Lei")
    rp, browser, tokens = signed_in_at(http, factories)
    sub = rp.userinfo(tokens["access_token"]).get_json()["sub"]
    tenant = factories.tenant("legacy-shop")
    with app.app_context():  # what an import leaves: a legacy account and the tenant's attributes
        tenant_id = db.session.scalar(db.select(Tenant.id).filter_by(slug=tenant))
        db.session.add(LegacyMapping(tenant_id=tenant_id, legacy_id="u-7", account_id=me, source="import"))
        db.session.add(AccountAttributes(tenant_id=tenant_id, account_id=me, data={"tier": "gold"}))
        db.session.commit()

    result = cli(app, "users", "export", EMAIL)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["account"]["id"] == me and data["account"]["name"] == "Li Lei" and data["account"]["has_password"]
    assert sorted((i["kind"], i["value"]) for i in data["identities"]) == [("email", EMAIL), ("phone", PHONE)]
    [client] = data["clients"]
    assert client["client_id"] == rp.client_id and client["sub"] == sub
    assert client["consent"]["scope"] and client["tokens"]["issued"] == 1 and client["tokens"]["live"] == 1
    [session] = data["sessions"]
    assert session["clients"] == [rp.client_id] and session["ended_at"] is None
    assert [s["sub"] for s in data["subjects"]] == [sub]
    [legacy] = data["legacy_accounts"]
    assert (legacy["tenant"], legacy["legacy_id"], legacy["source"]) == (tenant, "u-7", "import")
    assert data["attributes"] == {tenant: {"tier": "gold"}}
    assert "login.success" in [e["kind"] for e in data["events"]]
    for secret in ("$argon2", "password_hash", "cookie_hash", "token_hash", tokens["access_token"]):
        assert secret not in result.output

    assert cli_json(app, "users", "export", str(me))["account"]["id"] == me  # --json: the same document
    assert operator_events(app, me) == []  # read-only: nothing audited, nothing written
    missing = cli(app, "users", "export", "404", "--json")
    assert missing.exit_code == 1 and json.loads(missing.output.splitlines()[-1]) == {"error": "no account '404'"}


# --- another caller -----------------------------------------------------------------------------

def test_the_services_audit_the_actor_they_are_given_and_refuse_bad_types(app, outbox):
    """The admin API will call the same services as another actor: the actor is what is audited,
    and a value of the wrong type is an InvalidInput, never an error from deeper down."""
    me = make_account(app, phone=PHONE)
    with app.app_context():
        reset_password(me, NEW_PASSWORD, actor="admin:7")
        revoke_access(PHONE, actor="client:support-desk")
        for call in (lambda: reset_password(me, 12345678), lambda: revoke_access(me, client=5),
                     lambda: close(me, reason=["x"], actor="admin:7"), lambda: close(me, reason=None)):
            with pytest.raises(InvalidInput):
                call()
        close(me, "duplicate of another account", actor="admin:7")
    events = [json.loads(line) for line in cli(app, "audit", "search", "--account", str(me), "--json").output.splitlines()]
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("account.deregistered", "admin:7"), ("account.consents_revoked", "client:support-desk"),
        ("account.password_reset", "admin:7"),
    ]


# --- the real command --------------------------------------------------------------------------

def test_the_password_comes_from_a_pipe_and_lands_in_no_file(tessera):  # noqa: F811 (the fixture)
    """`tessera users reset-password --password-stdin` in a subprocess, as an operator runs it: the
    password is read from the pipe, and no file the hub writes (the database, the SMS and mail
    files of the `file` senders) holds it in clear."""
    tessera.ok("users", "create", "--phone", PHONE, "--password", PASSWORD, "--email", EMAIL)
    env = {**_env(tessera.db_file), "TESSERA_SMS_SENDER": "file"}
    piped = subprocess.run([TESSERA, "users", "reset-password", EMAIL, "--password-stdin"], input=NEW_PASSWORD + "\n",
                           cwd=tessera.db_file.parent, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "password reset" in piped.stdout, piped.stderr
    assert "person told by: email, sms" in piped.stdout and NEW_PASSWORD not in piped.stdout
    [(stored,)] = tessera.query("SELECT password_hash FROM accounts")
    assert stored.startswith("$argon2id$")
    instance = tessera.db_file.parent / "instance"
    written = tessera.raw_bytes() + (instance / "sms.jsonl").read_bytes() + (instance / "mail.jsonl").read_bytes()
    assert b"An operator reset the password" in written and NEW_PASSWORD.encode() not in written
