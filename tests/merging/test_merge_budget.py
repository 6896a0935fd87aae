"""Merge proofs draw on the shared credential budget: a logged-in person cannot guess another
account's password at /account/merge/ as fast as the server answers."""

from __future__ import annotations

from app.accounts.models import AuditEvent
from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import Browser


def _logged_in(app, account, address: str) -> Browser:
    browser = Browser(app.test_client(), ISSUER)
    browser.http.environ_base["REMOTE_ADDR"] = address
    page = browser.go("/account/login")
    assert browser.login(page, account.phone, account.password).status_code == 200
    return browser


def test_forty_wrong_merge_proofs_end_in_429_with_no_hint(app, budgets, factories):
    budgets(defaults=True)  # 10 failures per 15 minutes per target and per logged-in person
    mine, victim = factories.account(), factories.account(password="victim password 1")
    browser = _logged_in(app, mine, "198.51.100.40")
    page = browser.go("/account/merge/")
    responses = [browser.submit(page, {"login": victim.phone, "password": f"guess {n}", "submit": "Continue"})
                 for n in range(40)]
    statuses = [r.status_code for r in responses]
    assert statuses == [401] * 10 + [429] * 30
    locked = responses[-1]
    body = locked.get_data(as_text=True)
    assert int(locked.headers["Retry-After"]) > 0 and "too many attempts, try again later" in body
    assert victim.phone not in body and "wrong" not in body
    # The right password is refused too: the guess cannot be confirmed while the budget is spent.
    right = browser.submit(page, {"login": victim.phone, "password": "victim password 1", "submit": "Continue"})
    assert right.status_code == 429
    assert "Prove again" in browser.go("/account/merge/preview").get_data(as_text=True)


def test_a_logged_in_person_spreading_guesses_over_accounts_and_addresses_is_bounded(app, budgets, factories):
    budgets(TESSERA_CREDENTIAL_BUDGET_LOGGED_IN="4 per 15 minutes")
    mine = factories.account()
    others = [factories.account() for _ in range(5)]
    browser = _logged_in(app, mine, "198.51.100.41")
    page = browser.go("/account/merge/")
    statuses = []
    for n, other in enumerate(others):  # a new address and a new target each time
        browser.http.environ_base["REMOTE_ADDR"] = f"198.51.100.{50 + n}"
        statuses.append(browser.submit(page, {"login": other.phone, "password": "guess", "submit": "Continue"}).status_code)
    assert statuses == [401, 401, 401, 401, 429]
    with app.app_context():
        locked = db.session.scalars(db.select(AuditEvent).filter_by(kind="credentials.locked")).all()
        assert [(e.account_id, e.details["budgets"]) for e in locked] == [(mine.id, ["logged_in"])]
