"""A user merges their two accounts from /account: proof of the other account (password or a
code to its phone), preview, choice of the account that stays, confirmation."""

from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import Browser


def _account_login(app, account):
    browser = Browser(app.test_client(), ISSUER)
    page = browser.go("/account/login")
    response = browser.submit(page, {"login": account.phone, "password": account.password, "submit": "Log in"})
    assert response.status_code == 200 and "Log in" not in response.get_data(as_text=True)[:300]
    return browser


def _status(app, account_id):
    with app.app_context():
        return db.session.execute(text("SELECT status, merged_into_id FROM accounts WHERE id = :i"), {"i": account_id}).one()


def test_merge_with_the_other_accounts_password_and_its_phone_code(app, factories, outbox):
    mine = factories.account(name="Me")
    other = factories.account(nickname="alt", password="other password 1")
    browser = _account_login(app, mine)
    page = browser.go("/account/merge/")
    code_page = browser.submit(page, {"login": other.phone, "password": "other password 1", "submit": "Continue"})
    # The password alone does not absorb an account with a verified phone: its code too.
    assert "Enter the code" in code_page.get_data(as_text=True)
    assert "Prove again" in browser.go("/account/merge/preview").get_data(as_text=True)
    code_page = browser.go("/account/merge/code")
    preview = browser.submit(code_page, {"code": outbox.code(other.phone), "submit": "Confirm"})
    html = preview.get_data(as_text=True)
    assert "Before you merge" in html and other.phone in html and "nickname" in html
    done = browser.submit(preview, {"survivor": "this", "submit": "Merge the accounts"})
    assert "now one" in done.get_data(as_text=True)
    assert tuple(_status(app, other.id)) == ("merged", mine.id)
    with app.app_context():
        assert db.session.execute(text("SELECT origin FROM merge_records")).scalar() == "user"


def test_merge_with_the_password_of_an_account_without_a_phone(app, factories, outbox):
    from app.accounts.profile import create_account

    mine = factories.account()
    with app.app_context():
        other_id = create_account(email="alt@example.com", password="other password 1").id
    browser = _account_login(app, mine)
    page = browser.go("/account/merge/")
    preview = browser.submit(page, {"login": "alt@example.com", "password": "other password 1", "submit": "Continue"})
    assert "Before you merge" in preview.get_data(as_text=True)
    done = browser.submit(preview, {"survivor": "this", "submit": "Merge the accounts"})
    assert "now one" in done.get_data(as_text=True)
    assert tuple(_status(app, other_id)) == ("merged", mine.id)


def test_wrong_password_merges_nothing(app, factories):
    mine, other = factories.account(), factories.account()
    browser = _account_login(app, mine)
    page = browser.go("/account/merge/")
    response = browser.submit(page, {"login": other.phone, "password": "not it", "submit": "Continue"})
    assert response.status_code == 401
    assert "Prove again" in browser.go("/account/merge/preview").get_data(as_text=True)
    assert tuple(_status(app, other.id)) == ("active", None)


def test_merge_with_a_code_to_the_other_phone_keeping_the_other(app, factories, outbox):
    mine = factories.account()
    other = factories.account()
    browser = _account_login(app, mine)
    page = browser.go("/account/merge/")
    code_page = browser.submit(page, {"login": other.phone, "password": "", "submit": "Continue"})
    assert "Enter the code" in code_page.get_data(as_text=True)
    preview = browser.submit(code_page, {"code": outbox.code(other.phone), "submit": "Confirm"})
    done = browser.submit(preview, {"survivor": "other", "submit": "Merge the accounts"})
    assert "sign in again" in done.get_data(as_text=True)
    assert tuple(_status(app, mine.id)) == ("merged", other.id)
    # The merged account's session ended: /account now asks for a login.
    assert browser.http.get("/account/").status_code == 302


def test_unknown_other_account_answers_like_a_known_one(app, factories, outbox):
    mine = factories.account()
    browser = _account_login(app, mine)
    page = browser.go("/account/merge/")
    response = browser.submit(page, {"login": "+14155559999", "password": "", "submit": "Continue"})
    assert "Enter the code" in response.get_data(as_text=True)
    wrong = browser.submit(response, {"code": "123456", "submit": "Confirm"})
    assert wrong.status_code == 401
