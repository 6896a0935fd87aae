"""Operators acting on people (`tessera users lock/unlock/logout`, app.accounts.operators), run
through the app's CLI runner and seen through HTTP: the login refused, the session cookie dead, the
back-channel logout token delivered, the person's own security history."""

from __future__ import annotations

import json

from app.accounts.models import Account, Identity
from app.extensions import db
from app.security import utcnow
from tests.accounts.test_binding import PHONE, hub_login, make_account
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import Browser, RelyingParty, authorize, code_from


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def rp_session(app, http, factories, receiver) -> Browser:
    """A browser logged in at an RP that registered a back-channel logout URI."""
    client = factories.client(backchannel_logout_uri=f"{receiver.url}/bc")
    rp = RelyingParty.for_client(http, ISSUER, client)
    browser = Browser(http, ISSUER)
    request, response = authorize(browser, rp, type("A", (), {"phone": PHONE, "password": PASSWORD}))
    assert rp.exchange(code_from(response, request), request).status_code == 200
    return browser


def login_fails(app) -> bool:
    browser = Browser(app.test_client(), ISSUER)
    page = browser.submit(browser.go(f"{ISSUER}/account/login"), {"login": PHONE, "password": PASSWORD, "submit": "Log in"})
    return "Ways to log in" not in page.get_data(as_text=True)


def test_lock_ends_sessions_tells_clients_and_refuses_logins_until_unlocked(app, http, factories, receiver):
    from app.worker import run_once

    me = make_account(app, phone=PHONE)
    browser = rp_session(app, http, factories, receiver)
    assert "Ways to log in" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)

    result = cli(app, "users", "lock", PHONE, "--reason", "stolen phone reported")
    assert result.exit_code == 0 and f"account {me}: locked" in result.output
    assert "Log in to see" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)  # the cookie is dead
    assert login_fails(app)
    with app.app_context():
        run_once()
    assert [r["path"] for r in receiver.requests] == ["/bc"]
    delivered = json.loads(cli(app, "deliveries", "list", "--status", "delivered", "--json").output)
    assert [d["kind"] for d in delivered] == ["backchannel_logout"]

    assert cli(app, "users", "lock", str(me), "--reason", "again").exit_code == 1  # already locked
    result = cli(app, "users", "unlock", str(me))
    assert result.exit_code == 0 and "active" in result.output
    page = hub_login(app, PHONE).go(f"{ISSUER}/account/").get_data(as_text=True)
    assert "account.locked" in page and "account.unlocked" in page  # the person's security history
    events = [json.loads(line) for line in cli(app, "audit", "search", "--account", str(me), "--actor", "operator:*",
                                               "--json").output.splitlines()]
    assert [e["kind"] for e in events] == ["account.unlocked", "account.locked"]
    assert events[1]["details"]["reason"] == "stolen phone reported"


def test_logout_ends_every_session_and_tells_clients(app, http, factories, receiver):
    from app.worker import run_once

    me = make_account(app, phone=PHONE)
    browser = rp_session(app, http, factories, receiver)
    other = hub_login(app, PHONE)
    shown = json.loads(cli(app, "users", "show", str(me), "--json").output)
    assert len(shown["sessions"]) == 2
    result = cli(app, "users", "logout", PHONE, "--json")
    assert result.exit_code == 0 and json.loads(result.output) == {"sessions_ended": 2}
    for b in (browser, other):
        assert "Log in to see" in b.go(f"{ISSUER}/account/").get_data(as_text=True)
    with app.app_context():
        run_once()
    assert [r["path"] for r in receiver.requests] == ["/bc"]
    assert not login_fails(app)  # logging out is not locking


def test_an_account_without_a_way_in_stays_locked_and_says_why(app):
    me = make_account(app, phone=PHONE)
    with app.app_context():  # what the recycled-number rule leaves: the phone released, locked
        db.session.get(Account, me).status = "locked"
        db.session.scalar(db.select(Identity).filter_by(account_id=me)).released_at = utcnow()
        db.session.commit()
    result = cli(app, "users", "unlock", str(me), "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no way to log in" in json.loads(result.output.splitlines()[-1])["error"]
    with app.app_context():
        assert db.session.get(Account, me).status == "locked"


def test_unknown_accounts_and_bad_combinations_are_clear_errors(app):
    for args, message in [
        (("users", "show", "404"), "no account '404'"),
        (("users", "lock", "+14155550999", "--reason", "x"), "no account"),
        (("users", "search", "--phone", PHONE, "--name", "x"), "exactly one of"),
        (("users", "search", "--username", "bob"), "need --tenant"),
        (("users", "search", "--sub", "abc", "--client", "nope"), "no client 'nope'"),
        (("audit", "search", "--since", "yesterday"), "not an ISO 8601"),
        (("deliveries", "retry", "12345"), "no outbox event 12345"),
    ]:
        result = cli(app, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
