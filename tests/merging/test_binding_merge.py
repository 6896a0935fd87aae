"""The phone-binding case with business data hands over to the merge flow: offered to the user,
or done at once where automatic merges are switched on (seed 001's scheduling centre)."""

import pytest
from sqlalchemy import text

from app.extensions import db

from tests.accounts.test_binding import PHONE, account_row, bind, hub_login, live_identities, make_account, sms  # noqa: F401


def merge_origins(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(text("SELECT origin FROM merge_records ORDER BY id")))


@pytest.fixture
def auto_merge(app):
    app.config["TESSERA_AUTO_MERGE_SHARE"] = 100
    yield
    app.config["TESSERA_AUTO_MERGE_SHARE"] = 0


def test_binding_offers_the_merge_with_the_code_as_proof(app, sms):  # noqa: F811
    me = make_account(app, email="me@example.com")
    other = make_account(app, phone=PHONE, nickname="Xiao Li")
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE)
    assert page.status_code == 409 and "merge the two accounts" in page.get_data(as_text=True)
    preview = browser.go("http://localhost/account/merge/preview")
    assert "Before you merge" in preview.get_data(as_text=True)  # no second proof asked
    done = browser.submit(preview, {"survivor": "this", "submit": "Merge the accounts"})
    assert "now one" in done.get_data(as_text=True)
    assert live_identities(app, me) == {("email", "me@example.com"), ("phone", PHONE)}
    assert account_row(app, other).status == "merged" and account_row(app, me).nickname == "Xiao Li"
    assert merge_origins(app) == ["phone_binding"]  # offered by the binding, confirmed: still its origin


def test_automatic_merge_on_binding(app, sms, auto_merge):  # noqa: F811
    me = make_account(app, email="me@example.com")
    other = make_account(app, phone=PHONE, nickname="Xiao Li")
    browser = hub_login(app, "me@example.com")
    page = bind(browser, sms, PHONE)
    assert page.status_code == 200 and "now one" in page.get_data(as_text=True)
    assert account_row(app, other).status == "merged"
    assert live_identities(app, me) == {("email", "me@example.com"), ("phone", PHONE)}  # merged into the binder
    assert merge_origins(app) == ["phone_binding"]


def test_auto_merge_share_is_a_stable_bucket(app):
    with app.app_context():
        from app.merging.requests import auto_merge_allowed

        app.config["TESSERA_AUTO_MERGE_SHARE"] = 30
        try:
            chosen = [i for i in range(1000) if auto_merge_allowed(i)]
            assert 200 < len(chosen) < 400 and chosen == [i for i in range(1000) if auto_merge_allowed(i)]
        finally:
            app.config["TESSERA_AUTO_MERGE_SHARE"] = 0
