"""Logins and profile writes against both accounts while a merge runs (PostgreSQL): each either
succeeds on the right account or gets the retry answer; none is lost or lands on a closed account."""

import os
import threading

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty

pytestmark = pytest.mark.skipif(
    not (os.environ.get("TESSERA_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="row locks and concurrent transactions are tested on PostgreSQL (the PostgreSQL run of make test)",
)


def test_logins_and_writes_during_a_merge(app, factories):
    survivor = factories.account(name="S")
    absorbed = factories.account()
    client = factories.client(trusted=True)
    outcomes, writes, errors = [], [], []
    stop = threading.Event()

    def login_loop(account):
        while not stop.is_set():
            browser = Browser(app.test_client(), ISSUER)
            rp = RelyingParty.for_client(browser.http, ISSUER, client)
            page = browser.go(rp.authorization_request().url)
            response = browser.login(page, account.phone, account.password)
            if response.status_code == 302 and "code=" in response.location:
                with app.app_context():
                    owner = db.session.execute(text(
                        "SELECT account_id FROM sso_sessions ORDER BY id DESC LIMIT 1")).scalar()
                outcomes.append(("ok", account.id, owner))
            elif response.status_code == 503:
                outcomes.append(("retry", account.id, None))
            else:
                errors.append((response.status_code, response.get_data(as_text=True)[:300]))

    def write_loop(account_id):
        from app.merging.service import AccountBusy

        n = 0
        while not stop.is_set():
            n += 1
            with app.app_context():
                from app.accounts.service import update_profile
                from app.errors import InvalidInput

                try:
                    update_profile(account_id, nickname=f"n{account_id}-{n}")
                    writes.append((account_id, f"n{account_id}-{n}", "ok"))
                except AccountBusy:
                    writes.append((account_id, None, "retry"))
                except InvalidInput:
                    writes.append((account_id, None, "inactive"))

    threads = [threading.Thread(target=login_loop, args=(a,)) for a in (survivor, absorbed)]
    threads += [threading.Thread(target=write_loop, args=(a.id,)) for a in (survivor, absorbed)]
    for t in threads:
        t.start()
    try:
        with app.app_context():
            from app.merging.service import merge_accounts

            record = merge_accounts(survivor.id, absorbed.id, origin="operator")
            assert record.status == "completed"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:3]
    assert outcomes and writes

    with app.app_context():
        # Nothing lands on the closed account: no live session or token of the absorbed one.
        live = db.session.execute(text(
            "SELECT count(*) FROM sso_sessions s JOIN accounts a ON a.id = s.account_id "
            "WHERE a.status = 'merged' AND s.ended_at IS NULL")).scalar()
        tokens = db.session.execute(text(
            "SELECT count(*) FROM tokens t JOIN accounts a ON a.id = t.account_id "
            "WHERE a.status = 'merged' AND t.revoked_at IS NULL")).scalar()
        assert live == 0 and tokens == 0
        # No write was lost: the survivor's nickname is the last one written to it, or (if the
        # merge filled it) the absorbed account's, written before the merge read it.
        nickname = db.session.execute(text("SELECT nickname FROM accounts WHERE id = :i"), {"i": survivor.id}).scalar()
        survivor_writes = [w[1] for w in writes if w[0] == survivor.id and w[2] == "ok"]
        assert nickname == survivor_writes[-1]
        # Writes to the absorbed account after the merge are refused, never applied.
        absorbed_row = db.session.execute(text("SELECT status FROM accounts WHERE id = :i"), {"i": absorbed.id}).scalar()
        assert absorbed_row == "merged"
