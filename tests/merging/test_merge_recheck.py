"""Merges that waited for the merge lock re-check both accounts when they take it: a merge
never runs on an account that stopped being active meanwhile (no cycle, no phone left on a
merged account, no client told that one sub was merged into two)."""

import signal

from joserfc import jws
from sqlalchemy import text

from app.extensions import db
from app.merging.steps import MERGED_EVENT
from tests.accounts.conftest import OtpBrowser, new_phone
from tests.conftest import ISSUER
from tests.merging.test_merge import _deliver, _login, _run_until_killed, site  # noqa: F401  (fixture)
from tests.merging.test_user_merge import _account_login
from tests.rp import RelyingParty, code_from


def _merge_from_pages(browser, outbox, other_phone, keep):
    """/account/merge: prove the other account with a code to its phone, keep ``this``/``other``."""
    code_page = browser.submit(browser.go("/account/merge/"), {"login": other_phone, "password": "", "submit": "Continue"})
    preview = browser.submit(code_page, {"code": outbox.code(other_phone), "submit": "Confirm"})
    assert "Before you merge" in preview.get_data(as_text=True)
    return browser.submit(preview, {"survivor": keep, "submit": "Merge the accounts"})


def _merges(app):
    with app.app_context():
        db.session.remove()
        return {tuple(r[:2]): r[2:] for r in db.session.execute(text(
            "SELECT survivor_id, absorbed_id, status, last_error FROM merge_records ORDER BY id")).all()}


def test_pending_merges_recheck_the_accounts_when_they_take_the_lock(app, factories, site, receiver, outbox,
                                                                     database_url):
    s = factories.account(name="S")
    a = factories.account(phone=new_phone(), nickname="a")
    t = factories.account(phone=new_phone(), name="T")
    _, _, _, claims_a = _login(app, factories, site, a)   # the site knows A's sub ...
    _login(app, factories, site, t)                       # ... and T's

    # M1 (S←A), by an operator, dies right after taking its lock (a real kill -9): it holds it.
    killed = _run_until_killed(database_url, s.id, a.id, "locked")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # The person logged in to T merges A in, then (another try) T into A: both wait for M1.
    browser = _account_login(app, t)
    assert "under way" in _merge_from_pages(browser, outbox, a.phone, keep="this").get_data(as_text=True)  # M2: T←A
    assert "under way" in _merge_from_pages(browser, outbox, a.phone, keep="other").get_data(as_text=True)  # M3: A←T
    merges = _merges(app)
    assert [m[0] for m in merges.values()] == ["running", "pending", "pending"]

    # The worker (its real round) finishes M1, then takes M2 and M3 up.
    _deliver(app)
    _deliver(app)
    merges = _merges(app)
    assert merges[(s.id, a.id)][0] == "completed"
    assert merges[(t.id, a.id)][0] == "failed" and merges[(t.id, a.id)][1].startswith("absorbed_not_active")
    assert merges[(a.id, t.id)][0] == "failed" and merges[(a.id, t.id)][1].startswith("survivor_merged")
    assert f"account {s.id}" in merges[(a.id, t.id)][1]  # the reason names the account to use instead

    with app.app_context():
        accounts = {r[0]: tuple(r[1:]) for r in db.session.execute(text(
            "SELECT id, status, merged_into_id FROM accounts WHERE id IN (:s, :a, :t)"), {"s": s.id, "a": a.id, "t": t.id})}
        phone_owner = db.session.execute(text(
            "SELECT account_id FROM identities WHERE kind = 'phone' AND value = :p AND released_at IS NULL"),
            {"p": t.phone}).scalar()
        locks = db.session.execute(text("SELECT count(*) FROM merge_locks")).scalar()
    assert accounts == {s.id: ("active", None), a.id: ("merged", s.id), t.id: ("active", None)}  # no cycle
    assert phone_owner == t.id and locks == 0

    # T still logs in with its phone (a code to it), at the site, as T.
    phone_browser = OtpBrowser(app.test_client(), ISSUER)
    rp = RelyingParty.for_client(phone_browser.http, ISSUER, site)
    code_page = phone_browser.send_code(phone_browser.otp_page(rp, scope="openid profile"), t.phone)
    response = phone_browser.enter_code(code_page, outbox.code(t.phone))
    tokens = rp.exchange(code_from(response, phone_browser.auth_request), phone_browser.auth_request).get_json()
    assert rp.userinfo(tokens["access_token"]).get_json()["name"] == "T"

    # The site was told once that A's sub was merged, into S's: never into a second sub.
    merged_events = []
    for request in receiver.requests:
        if request["path"] == "/events":
            event = jws.extract_compact(request["token"].encode())
            payload = __import__("json").loads(event.payload)["events"]
            if MERGED_EVENT in payload:
                merged_events.append(payload[MERGED_EVENT])
    about_a = [e for e in merged_events if e["absorbed_subject"]["sub"] == claims_a["sub"]]
    assert len(about_a) == 1, merged_events
