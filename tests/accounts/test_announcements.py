"""The account core announces what happened (app/signals.py) and never needs a feature to do it:
each test connects its own listener (``connected_to``) and drives the person's pages over HTTP."""

from __future__ import annotations

import pytest

from app import signals
from app.extensions import db
from tests.accounts.test_binding import PHONE, account_row, hub_login, make_account
from tests.conftest import ISSUER


def test_a_profile_change_is_announced_to_any_listener(app):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    heard = []

    def listener(account_id, **kwargs):
        heard.append((account_id, kwargs))

    with signals.claims_changed.connected_to(listener):
        page = browser.go(f"{ISSUER}/account/profile")
        browser.submit(page, {"name": "Li Lei", "nickname": "lei", "submit": "Save"})
    assert heard == [(me, {"claims": ["name", "nickname"], "source": "self", "client": None, "tenant_id": None})]


def test_an_email_added_then_verified_is_announced_each_time(app, outbox):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    heard = []

    def listener(account_id, **kwargs):
        heard.append((account_id, kwargs["claims"], kwargs["source"]))

    with signals.claims_changed.connected_to(listener):
        page = browser.go(f"{ISSUER}/account/")
        browser.submit(page, {"email": "me@example.com", "submit": "Add email"}, url=f"{ISSUER}/account/email")
        assert heard == [(me, ["email", "email_verified"], "self")]  # an unverified email, email_verified false
        [mail] = outbox.mails("me@example.com")
        browser.go(mail["link"])
    assert heard == [(me, ["email", "email_verified"], "self"), (me, ["email_verified"], "self")]


def test_closing_an_account_is_announced_and_its_sessions_end(app):
    me = make_account(app, phone=PHONE)
    browser = hub_login(app, PHONE)
    closed = []

    def listener(account, **kwargs):
        closed.append((account.id, kwargs["reason"]))
        return ["https://rp.example/fc?sid=x"]  # a receiver's front-channel URLs reach the logged-out page

    with signals.account_closed.connected_to(listener):
        page = browser.go(f"{ISSUER}/account/deregister")
        page = browser.submit(page, {"submit": "Close my account"})
    assert closed == [(me, "deregistered")]
    html = page.get_data(as_text=True)
    assert "You are logged out" in html and "https://rp.example/fc?sid=x" in html
    assert account_row(app, me).status == "closed"
    assert browser.go(f"{ISSUER}/account/").status_code == 200 and "Log in to see" in html + browser.last_page.get_data(as_text=True)


def test_a_receiver_that_fails_aborts_the_sender(app):
    """The transaction contract: a receiver's exception propagates and nothing of the change lands."""
    from app.accounts.profile import update_profile

    me = make_account(app, phone=PHONE)

    def failing(account_id, **kwargs):  # noqa: ARG001
        raise RuntimeError("the change log is unavailable")

    with app.app_context(), signals.claims_changed.connected_to(failing):
        with pytest.raises(RuntimeError):
            update_profile(me, name="Han Meimei")
        db.session.rollback()
    assert account_row(app, me).name is None
