"""Logins and profile writes against both accounts while a merge runs (PostgreSQL): each either
succeeds on the right account or gets the retry answer; none is lost or lands on a merged account.

The test holds the merge still: from its own connection it locks the absorbed account's subject
mappings, which the merge's ``subjects_aliased`` step must update — so once the merge committed
``data_unioned`` it holds its merge lock until the test lets go. Every attempt records the phase
in which it started and ended; the test waits (no clock: counts) until each loop made attempts
wholly inside that window, so logins and writes provably overlapped the merge."""

import os
import threading
import time

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from, csrf_token

pytestmark = pytest.mark.skipif(
    not (os.environ.get("TESSERA_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="row locks and concurrent transactions are tested on PostgreSQL (the PostgreSQL run of make test)",
)

#: Phases, set by the test thread only.
BEFORE, STARTING, WINDOW, RELEASING, AFTER = range(5)
#: Upper bound for any wait: a hung test fails instead of blocking the run (not a speed assertion).
PATIENCE = 300


class Run:
    """What the loops record, under one lock; ``changed`` wakes the test thread up."""

    def __init__(self):
        self.phase = BEFORE
        self.attempts: list[dict] = []
        self.errors: list = []
        self.changed = threading.Condition()

    def record(self, **attempt):
        with self.changed:
            self.attempts.append(attempt)
            self.changed.notify_all()

    def fail(self, error):
        with self.changed:
            self.errors.append(error)
            self.changed.notify_all()

    def wait_for(self, predicate, what: str):
        """Until ``predicate()`` holds (re-checked at every attempt recorded, and now and then)."""
        deadline = time.monotonic() + PATIENCE
        while not predicate():
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"timed out: {what}"
            with self.changed:
                self.changed.wait(timeout=0.5)
        assert not self.errors, self.errors[:3]

    def count(self, loop, *, started=None, ended=None, since=None):
        with self.changed:
            return sum(1 for a in self.attempts if a["loop"] == loop
                       and (started is None or a["started"] == started) and (ended is None or a["ended"] == ended)
                       and (since is None or a["started"] >= since))


def _site_login(app, client, account):
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty.for_client(browser.http, ISSUER, client)
    request, response = authorize(browser, rp, account)
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]


def _hub_browser(app, account):
    browser = Browser(app.test_client(), ISSUER)
    page = browser.go("/account/login")
    response = browser.submit(page, {"login": account.phone, "password": account.password, "submit": "Log in"})
    assert response.status_code == 200 and "Log in" not in response.get_data(as_text=True)[:300]
    return browser


def test_logins_and_writes_during_a_merge(app, factories):
    survivor = factories.account(name="S", nickname="s0")
    absorbed = factories.account(name="A", nickname="a0")
    client = factories.client(trusted=True)
    subs = {_site_login(app, client, survivor): survivor.id, _site_login(app, client, absorbed): absorbed.id}
    hub = {survivor.id: _hub_browser(app, survivor), absorbed.id: _hub_browser(app, absorbed)}
    run, stop = Run(), threading.Event()
    start = threading.Barrier(5)  # the four loops and this thread: nobody runs ahead

    def login_loop(account):
        loop = ("login", account.id)
        start.wait(timeout=PATIENCE)
        while not stop.is_set():
            started = run.phase
            browser = Browser(app.test_client(), ISSUER)
            rp = RelyingParty.for_client(browser.http, ISSUER, client)
            request = rp.authorization_request()
            response = browser.login(browser.go(request.url), account.phone, account.password)
            attempt = {"loop": loop, "started": started}
            if response.status_code == 302 and "code=" in (response.location or ""):
                tokens = rp.exchange(code_from(response, request), request).get_json()
                sub = rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]
                attempt.update(outcome="ok", owner=subs.get(sub), sub=sub, access_token=tokens["access_token"], rp=rp)
            elif response.status_code == 503:
                attempt.update(outcome="retry")
            elif response.status_code in (200, 401) and ("wrong identifier or password" in response.get_data(as_text=True)
                                                         or "not active" in response.get_data(as_text=True)):
                attempt.update(outcome="refused")  # the account stopped being active during this login
            else:
                run.fail(("login", response.status_code, response.get_data(as_text=True)[:300]))
                return
            attempt["ended"] = run.phase
            run.record(**attempt)

    def write_loop(account_id):
        loop, browser, n = ("write", account_id), hub[account_id], 0
        start.wait(timeout=PATIENCE)
        page = browser.go("/account/profile")
        while not stop.is_set():
            n += 1
            started, value = run.phase, f"n{account_id}-{n}"
            response = browser.http.post("/account/profile", data={
                "csrf_token": csrf_token(page.get_data(as_text=True)), "name": "S" if account_id == survivor.id else "A", "nickname": value})
            body = response.get_data(as_text=True)
            if response.status_code == 302 and response.location.endswith("/account/"):
                outcome = "ok"
            elif response.status_code == 200 and "being merged" in body:
                outcome = "retry"
            elif (response.status_code == 302 and "/account/login" in response.location) or "not active" in body:
                outcome = "inactive"  # the session ended with the merge, or the account is merged
            else:
                run.fail(("write", response.status_code, body[:300]))
                return
            run.record(loop=loop, started=started, ended=run.phase, outcome=outcome, value=value)

    merged = {}

    def merge():
        with app.app_context():
            from app.merging.requests import merge_to_dict
            from app.merging.run import merge_accounts

            try:
                merged.update(merge_to_dict(merge_accounts(survivor.id, absorbed.id, origin="operator")))
            except Exception as exc:  # reported by the assertions below
                merged["error"] = repr(exc)

    loops = [("login", survivor.id), ("login", absorbed.id), ("write", survivor.id), ("write", absorbed.id)]
    threads = [threading.Thread(target=login_loop, args=(a,), daemon=True) for a in (survivor, absorbed)]
    threads += [threading.Thread(target=write_loop, args=(i,), daemon=True) for i in (survivor.id, absorbed.id)]
    merger = threading.Thread(target=merge, daemon=True)
    for t in threads:
        t.start()
    with app.app_context():
        blocker = db.engine.connect()
    try:
        start.wait(timeout=PATIENCE)
        # Before: each loop succeeded at least once.
        run.wait_for(lambda: all(run.count(loop, started=BEFORE, ended=BEFORE) for loop in loops), "attempts before the merge")

        # The merge starts; it can take its lock and union the data, then it waits for us.
        held = blocker.execute(text("SELECT id FROM subject_mappings WHERE account_id = :a FOR UPDATE"),
                               {"a": absorbed.id}).all()
        assert held, "the absorbed account has a subject to hold"
        run.phase = STARTING
        merger.start()
        with app.app_context():
            def merge_step():
                db.session.remove()
                return db.session.execute(text("SELECT step FROM merge_records")).scalar()
            run.wait_for(lambda: merge_step() == "data_unioned" or merged, "the merge reaching its held step")
            assert not merged, merged  # still running: held by our lock
            assert db.session.execute(text("SELECT count(*) FROM merge_locks")).scalar() == 2
            db.session.remove()
        run.phase = WINDOW
        # The window: every loop makes attempts that start and end while the merge holds its lock.
        run.wait_for(lambda: all(run.count(loop, started=WINDOW, ended=WINDOW) >= 2 for loop in loops),
                     "attempts while the merge holds its lock")
        run.phase = RELEASING
    finally:
        blocker.rollback()
        blocker.close()
    merger.join(timeout=PATIENCE)
    assert not merger.is_alive(), "the merge never finished"
    assert merged.get("status") == "completed", merged
    run.phase = AFTER
    run.wait_for(lambda: all(run.count(loop, started=AFTER) >= 1 for loop in loops), "attempts after the merge")
    stop.set()
    for t in threads:
        t.join(timeout=PATIENCE)
    assert not any(t.is_alive() for t in threads), "a loop is stuck"
    assert not run.errors, run.errors[:3]

    def outcomes(loop, phase):
        return [a for a in run.attempts if a["loop"] == loop and a["started"] == phase and a["ended"] == phase]

    s, a = survivor.id, absorbed.id
    for loop in loops:
        assert {x["outcome"] for x in outcomes(loop, BEFORE)} == {"ok"}, loop
        assert {x["outcome"] for x in outcomes(loop, WINDOW)} == {"retry"}, loop  # the merge held both accounts
    # Logins land on the right account: the survivor's always on it; the absorbed account's
    # identifiers on it before the merge, on the survivor after it.
    ok_logins = [x for x in run.attempts if x["loop"][0] == "login" and x["outcome"] == "ok"]
    assert all(x["owner"] == s for x in ok_logins if x["loop"] == ("login", s))
    assert {x["owner"] for x in outcomes(("login", a), BEFORE)} == {a}
    assert [x["owner"] for x in run.attempts if x["loop"] == ("login", a) and x["started"] == AFTER] \
        and all(x["owner"] == s and x["outcome"] == "ok" for x in run.attempts if x["loop"] == ("login", a) and x["started"] == AFTER)
    assert all(x["owner"] in (s, a) for x in ok_logins)
    # What the absorbed account got is dead now: its tokens are refused, the survivor's work.
    for x in ok_logins:
        status = x["rp"].userinfo(x["access_token"]).status_code
        assert status == (401 if x["owner"] == a else 200), (x["loop"], x["started"], x["ended"], status)

    with app.app_context():
        db.session.remove()
        live = db.session.execute(text(
            "SELECT count(*) FROM sso_sessions s JOIN accounts a ON a.id = s.account_id "
            "WHERE a.status = 'merged' AND s.ended_at IS NULL")).scalar()
        assert live == 0  # no session outlives the merge of its account
        rows = {r[0]: tuple(r[1:]) for r in db.session.execute(text(
            "SELECT id, status, merged_into_id, nickname FROM accounts WHERE id IN (:s, :a)"), {"s": s, "a": a})}
    # No write was lost: each account's nickname is the last one written to it successfully
    # (the merge keeps the survivor's own value), and none reached the absorbed one after it.
    last = {i: ([x["value"] for x in run.attempts if x["loop"] == ("write", i) and x["outcome"] == "ok"] or [None])[-1]
            for i in (s, a)}
    assert rows[s] == ("active", None, last[s] or "s0")
    assert rows[a] == ("merged", s, last[a] or "a0")
    assert {x["outcome"] for x in run.attempts if x["loop"] == ("write", a) and x["started"] == AFTER} == {"inactive"}


#: Where the login thread is held while a whole merge runs: right after its password check (its
#: next statement is about the merge lock or the account's row lock), or after the login was
#: recorded and committed, just before its session starts (about the session or the row lock).
HOLD_POINTS = {
    "after_password_check": lambda seen, statement: "merge_locks" in statement or "FOR UPDATE" in statement,
    "before_session_start": lambda seen, statement: any("INSERT INTO audit_events" in s for s in seen)
    and ("sso_sessions" in statement or "FOR UPDATE" in statement),
}


@pytest.mark.parametrize("hold_at", sorted(HOLD_POINTS))
def test_a_login_spanning_a_whole_merge_leaves_no_session(app, factories, hold_at):
    """The race of a login that read the account as active before its (slow) password check,
    or before starting its session, while a merge ran from start to end: the login must re-read
    the account under its row lock and refuse, never leave a live session on the merged account.
    The login thread is held at ``hold_at`` by a listener on the database engine (the code under
    test runs unchanged)."""
    from sqlalchemy import event

    survivor, absorbed = factories.account(name="S"), factories.account(name="A")
    client = factories.client(trusted=True)
    reached, release, outcome, seen = threading.Event(), threading.Event(), {}, []

    def hold_the_login(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name != "login" or reached.is_set():
            return
        if HOLD_POINTS[hold_at](seen, statement):
            reached.set()
            release.wait(timeout=PATIENCE)
        seen.append(statement)

    def login():
        browser = Browser(app.test_client(), ISSUER)
        rp = RelyingParty.for_client(browser.http, ISSUER, client)
        request = rp.authorization_request()
        response = browser.login(browser.go(request.url), absorbed.phone, absorbed.password)
        outcome.update(status=response.status_code, location=response.location or "",
                       body=response.get_data(as_text=True)[:2000])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", hold_the_login)
    thread = threading.Thread(target=login, name="login", daemon=True)
    try:
        thread.start()
        assert reached.wait(timeout=PATIENCE), f"the login never reached {hold_at}"
        with app.app_context():
            from app.merging.run import merge_accounts

            assert merge_accounts(survivor.id, absorbed.id, origin="operator").status == "completed"
    finally:
        release.set()
        thread.join(timeout=PATIENCE)
        if not thread.is_alive():
            event.remove(engine, "before_cursor_execute", hold_the_login)  # not while it runs
    assert not thread.is_alive(), "the login is stuck"

    with app.app_context():
        db.session.remove()
        live = db.session.execute(text("SELECT count(*) FROM sso_sessions WHERE account_id = :a AND ended_at IS NULL"),
                                  {"a": absorbed.id}).scalar()
    assert live == 0, "a live session on the account merged meanwhile"
    assert "code=" not in outcome["location"]
    # A refusal in words: the one answer of a failed login, or "not active" once it had passed.
    assert ("wrong identifier or password" if hold_at == "after_password_check" else "not active") in outcome["body"]


def test_two_workers_claiming_merges_at_once_run_each_merge_once(app, factories):
    """Two workers resume pending merges at once (FOR UPDATE SKIP LOCKED claims): every merge
    runs once — one attempt, one completion, one notification per client. The test holds the
    first merge (a row lock of its own on its absorbed account) until the other worker finished
    its share, so both workers provably claimed merges; the held worker then goes on with the
    merges it claimed and never runs one the other worker completed."""
    client = factories.client(trusted=True, events_endpoint="https://rp.example.com/events")
    pairs = []
    for _ in range(6):
        survivor, absorbed = factories.account(), factories.account()
        _site_login(app, client, absorbed)  # the client knows it: one SET per merge
        pairs.append((survivor.id, absorbed.id))
    saved_lease = app.config["TESSERA_MERGE_LEASE"]
    app.config["TESSERA_MERGE_LEASE"] = 3600  # no claim runs out during the test: a re-run would be a crash's
    with app.app_context():
        from app.merging.requests import request_merge
        from app.merging.run import resume_due_merges

        ids = [request_merge(s, a, origin="operator").id for s, a in pairs]
        blocker = db.engine.connect()
    blocker.execute(text("SELECT id FROM accounts WHERE id = :a FOR UPDATE"), {"a": pairs[0][1]})
    start, claimed, errors = threading.Barrier(2, timeout=PATIENCE), {}, []

    def worker(name):
        with app.app_context():
            try:
                start.wait()
                claimed[name] = 0
                while n := resume_due_merges(limit=3):  # the worker's real function: 3 claimed a round
                    claimed[name] += n
            except Exception as exc:  # reported below
                errors.append(repr(exc))

    def statuses():
        with app.app_context():
            db.session.remove()
            return dict(db.session.execute(text("SELECT id, status FROM merge_records")).all())

    threads = [threading.Thread(target=worker, args=(name,), daemon=True) for name in ("one", "two")]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + PATIENCE
        # The first claim took the first three (the held one first, the next two wait behind
        # it); the other worker claimed and finished the last three meanwhile.
        while any(statuses()[i] != "completed" for i in ids[3:]):
            assert time.monotonic() < deadline and not errors, ("timed out", statuses(), errors)
            time.sleep(0.1)
        assert [statuses()[i] for i in ids[:3]] == ["running", "pending", "pending"]
    finally:
        blocker.rollback()
        blocker.close()
    for t in threads:
        t.join(timeout=PATIENCE)
    app.config["TESSERA_MERGE_LEASE"] = saved_lease
    assert not any(t.is_alive() for t in threads), "a worker is stuck"
    assert not errors, errors
    assert sorted(claimed.values()) == [3, 3]  # each worker claimed (and ran) its own three

    with app.app_context():
        db.session.remove()
        rows = db.session.execute(text("SELECT id, status, attempts FROM merge_records ORDER BY id")).all()
        completions = db.session.execute(text(
            "SELECT count(*) FROM audit_events WHERE kind = 'merge.completed'")).scalar()
        sets = dict(db.session.execute(text(
            "SELECT reference, count(*) FROM outbox_events WHERE kind = 'set' GROUP BY reference")).all())
    assert [tuple(r) for r in rows] == [(i, "completed", 1) for i in ids]  # each run once
    assert completions == len(ids) and sets == {f"merge-{i}": 1 for i in ids}
