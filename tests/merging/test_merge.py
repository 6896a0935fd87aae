"""Account merging: data union, subject aliases, revocation, notifications, idempotency, chains,
the merge lock, and resumption after a real kill -9 after each step."""

import os
import signal
import subprocess
import sys

import pytest
from joserfc import jwt
from sqlalchemy import text

from app.extensions import db
from app.merging.models import STEPS
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from, query_of


def _login(app, factories, client, account):
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty.for_client(browser.http, ISSUER, client)
    request, response = authorize(browser, rp, account, scope="openid profile email phone")
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return browser, rp, tokens, rp.validate_id_token(tokens["id_token"], nonce=request.nonce)


@pytest.fixture
def site(factories, receiver):
    return factories.client(redirect_uri="https://shop.example.com/cb", trusted=True,
                            backchannel_logout_uri=f"{receiver.url}/bc", events_endpoint=f"{receiver.url}/events")


def _merge(app, survivor_id, absorbed_id, **kwargs):
    with app.app_context():
        from app.merging.requests import merge_to_dict
        from app.merging.run import merge_accounts

        return merge_to_dict(merge_accounts(survivor_id, absorbed_id, origin=kwargs.pop("origin", "operator"), **kwargs))


def _deliver(app):
    with app.app_context():
        from app.worker import run_once

        return run_once()


def test_merge_end_to_end(app, factories, site, receiver):
    survivor = factories.account(name="Ada", email="ada@example.com")
    absorbed = factories.account(nickname="countess", email="lovelace@example.org")
    browser_s, rp, tokens_s, claims_s = _login(app, factories, site, survivor)
    browser_a, _, tokens_a, claims_a = _login(app, factories, site, absorbed)
    assert claims_s["sub"] != claims_a["sub"]

    with app.app_context():
        from app.merging.preview import preview_merge

        preview = preview_merge(survivor.id, absorbed.id)
    assert {i["value"] for i in preview["identities_moving"]} == {absorbed.phone, "lovelace@example.org"}
    assert preview["claims_changing"] == {"nickname": {"from": None, "to": "countess"}}
    assert [c["client_id"] for c in preview["clients_told"]] == [site.client_id]

    record = _merge(app, survivor.id, absorbed.id, reason="same person")
    assert record["status"] == "completed" and record["step"] == "completed"

    # The absorbed account's access is gone; the survivor's is not.
    assert rp.userinfo(tokens_a["access_token"]).status_code == 401
    info = rp.userinfo(tokens_s["access_token"]).get_json()
    assert info["sub"] == claims_s["sub"] and info["nickname"] == "countess" and info["name"] == "Ada"
    assert query_of(browser_a.go(rp.authorization_request(prompt="none").url).location)["error"] == "login_required"

    # Its identifiers now log in to the survivor, who gets the survivor's sub.
    absorbed.password = survivor.password  # the survivor's password now guards every identifier
    _, _, _, again = _login(app, factories, site, absorbed)
    assert again["sub"] == claims_s["sub"]

    # The client is told: a back-channel logout for the absorbed session and an "account merged" SET.
    _deliver(app)
    paths = sorted(r["path"] for r in receiver.requests)
    assert paths == ["/bc", "/events"]
    event = next(r for r in receiver.requests if r["path"] == "/events")
    decoded = jwt.decode(event["token"], rp.jwks(), algorithms=["RS256"])
    assert decoded.header["typ"] == "secevent+jwt"
    merged = decoded.claims["events"]["urn:tessera:event:account-merged"]
    assert merged["subject"]["sub"] == claims_s["sub"] and merged["absorbed_subject"]["sub"] == claims_a["sub"]
    assert decoded.claims["aud"] == site.client_id and decoded.claims["iss"] == ISSUER

    with app.app_context():
        row = db.session.execute(text("SELECT status, merged_into_id FROM accounts WHERE id = :id"), {"id": absorbed.id}).one()
        assert tuple(row) == ("merged", survivor.id)
        subs = dict(db.session.execute(text("SELECT sub, account_id FROM subject_mappings")).all())
        assert subs[claims_a["sub"]] == survivor.id  # the absorbed sub resolves to the survivor
        assert db.session.execute(text("SELECT count(*) FROM merge_locks")).scalar() == 0


def test_merge_is_idempotent_and_refuses_nonsense(app, factories):
    a, b = factories.account(), factories.account()
    first = _merge(app, a.id, b.id)
    assert _merge(app, a.id, b.id)["id"] == first["id"]
    from app.errors import Conflict, InvalidInput

    with app.app_context():
        from app.merging.requests import request_merge

        with pytest.raises(InvalidInput):
            request_merge(a.id, a.id, origin="operator")
        with pytest.raises(Conflict, match="already merged"):
            request_merge(factories.account().id, b.id, origin="operator")


def test_chains_resolve(app, factories, site):
    a, b, c = factories.account(), factories.account(), factories.account()
    _, _, _, claims_a = _login(app, factories, site, a)
    _, _, _, claims_c = _login(app, factories, site, c)
    _merge(app, b.id, a.id)
    _merge(app, c.id, b.id)
    with app.app_context():
        owner = db.session.execute(text("SELECT account_id FROM subject_mappings WHERE sub = :s"), {"s": claims_a["sub"]}).scalar()
        assert owner == c.id
    a.password = c.password
    assert _login(app, factories, site, a)[3]["sub"] == claims_c["sub"]


def test_merge_lock_makes_logins_retry(app, factories, site):
    a, b = factories.account(), factories.account()
    with app.app_context():
        from app.merging.models import MergeLock
        from app.merging.requests import request_merge
        from app.merging.run import run_merge

        record = request_merge(a.id, b.id, origin="operator")
        # As if the merge had taken its lock (step "locked") and were still running.
        db.session.add_all([MergeLock(account_id=a.id, merge_id=record.id), MergeLock(account_id=b.id, merge_id=record.id)])
        db.session.commit()
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty.for_client(browser.http, ISSUER, site)
    page = browser.go(rp.authorization_request().url)
    response = browser.login(page, b.phone, b.password)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "being merged" in response.get_data(as_text=True)

    # A second merge touching a locked account waits (pending) instead of running alongside.
    other = factories.account()
    with app.app_context():
        from app.merging.requests import request_merge
        from app.merging.run import run_merge

        waiting = run_merge(request_merge(other.id, a.id, origin="operator").id)
        assert waiting.status == "pending" and waiting.step == "requested"
        finished = run_merge(record.id)
        assert finished.status == "completed"


def _run_until_killed(database_url, survivor, absorbed, step):
    env = dict(os.environ, TESSERA_DATABASE_URL=database_url, TESSERA_ALLOW_PRIVATE_OUTBOUND="1",
               TESSERA_SECRET_KEY="test-secret-key-that-is-long-enough-0123456789", TESSERA_ISSUER=ISSUER,
               TESSERA_FAULT_KILL_AFTER_MERGE_STEP=step, TESSERA_MERGE_LEASE="0")
    result = subprocess.run([sys.executable, "-m", "app.cli", "merges", "create", "--survivor", str(survivor),
                             "--absorbed", str(absorbed), "--reason", "crash test", "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    return result


def _state(app, survivor_id, absorbed_id):
    with app.app_context():
        db.session.remove()
        q = lambda sql: [tuple(r) for r in db.session.execute(text(sql), {"s": survivor_id, "a": absorbed_id}).all()]  # noqa: E731
        return {
            "accounts": q("SELECT id, status, merged_into_id, nickname, name FROM accounts WHERE id IN (:s, :a) ORDER BY id"),
            "identities": q("SELECT account_id, kind, value FROM identities WHERE account_id IN (:s, :a) ORDER BY kind, value"),
            "subjects": q("SELECT account_id, sub, alias FROM subject_mappings WHERE account_id IN (:s, :a) ORDER BY sub"),
            "live_tokens": q("SELECT count(*) FROM tokens WHERE account_id = :a AND revoked_at IS NULL"),
            "locks": q("SELECT count(*) FROM merge_locks"),
            "merge": q("SELECT status, step FROM merge_records"),
            "error": q("SELECT last_error, locked_until FROM merge_records"),
            "sets": q("SELECT count(*) FROM outbox_events WHERE kind = 'set'"),
        }


@pytest.mark.parametrize("step", STEPS[1:-1])
def test_crash_after_each_step_resumes_to_the_same_end(app, factories, site, database_url, step):
    survivor = factories.account(name="Survivor")
    absorbed = factories.account(nickname="nick", email="absorbed@example.org")
    _login(app, factories, site, survivor)
    _login(app, factories, site, absorbed)

    result = _run_until_killed(database_url, survivor.id, absorbed.id, step)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    crashed = _state(app, survivor.id, absorbed.id)
    assert crashed["merge"][0][1] == step  # killed right after this step committed

    # The worker picks the merge up and finishes it; nothing is done twice.
    _deliver(app)
    final = _state(app, survivor.id, absorbed.id)
    assert final["merge"] == [("completed", "completed")]
    assert final["accounts"] == [(survivor.id, "active", None, "nick", "Survivor"),
                                 (absorbed.id, "merged", survivor.id, "nick", None)]  # its own row keeps its data
    assert {i[0] for i in final["identities"]} == {survivor.id}
    assert {i[2] for i in final["identities"]} == {survivor.phone, absorbed.phone, "absorbed@example.org"}
    assert all(s[0] == survivor.id for s in final["subjects"]) and len(final["subjects"]) == 2
    assert final["live_tokens"] == [(0,)] and final["locks"] == [(0,)] and final["sets"] == [(1,)]


def test_metrics(app, factories, site, http):
    a, b = factories.account(), factories.account()
    _login(app, factories, site, b)
    _merge(app, a.id, b.id)
    body = http.get("/metrics").get_data(as_text=True)
    assert 'tessera_merges{status="completed"} 1' in body
    assert 'tessera_outbox_events{kind="set",status="pending"} 1' in body


def test_merge_unions_the_address_book_and_attributes(app, factories):
    a, b = factories.account(), factories.account()
    tenant = factories.tenant()
    with app.app_context():
        from app.bulk_import.models import AccountAttributes
        from app.partners.models import AccountAddress
        from app.tenants.service import get_tenant

        tenant_id = get_tenant(tenant).id
        db.session.add_all([
            AccountAddress(uid="a1", account_id=a.id, value={"locality": "Shanghai"}, source="user"),
            AccountAddress(uid="b1", account_id=b.id, value={"locality": "Shanghai"}, source="user"),
            AccountAddress(uid="b2", account_id=b.id, value={"locality": "Beijing"}, source="user"),
            AccountAttributes(account_id=a.id, tenant_id=tenant_id, data={"tier": "gold"}),
            AccountAttributes(account_id=b.id, tenant_id=tenant_id, data={"tier": "silver", "coupon": "X1"}),
        ])
        db.session.commit()
    _merge(app, a.id, b.id)
    with app.app_context():
        localities = sorted(v["locality"] for v in db.session.scalars(db.select(AccountAddress.value).filter_by(account_id=a.id)))
        assert localities == ["Beijing", "Shanghai"]  # unioned, the duplicate not doubled
        attributes = db.session.scalar(db.select(AccountAttributes.data).filter_by(account_id=a.id, tenant_id=tenant_id))
        assert attributes == {"tier": "gold", "coupon": "X1"}


def test_an_account_under_a_merge_takes_no_new_email_and_cannot_be_closed(app, factories):
    """Adding an identity or closing the account goes through the same write lock as a login: while
    a merge holds the account, the retry answer, and nothing written (else the email would stay on
    the merged account, or the merge would complete on a closed one)."""
    from tests.merging.test_user_merge import _account_login, _status

    a, b = factories.account(), factories.account()
    browser = _account_login(app, b)
    with app.app_context():
        from app.merging.models import MergeLock
        from app.merging.requests import request_merge

        record = request_merge(a.id, b.id, origin="operator")
        db.session.add_all([MergeLock(account_id=a.id, merge_id=record.id), MergeLock(account_id=b.id, merge_id=record.id)])
        db.session.commit()
    page = browser.go("/account/")
    added = browser.submit(page, {"email": "new@example.org", "submit": "Add email"}, url="http://localhost/account/email")
    assert "being merged" in added.get_data(as_text=True)
    closing = browser.go("/account/deregister")
    refused = browser.submit(closing, {"submit": "Close my account"})
    assert "being merged" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM identities WHERE value = 'new@example.org'")).scalar() == 0
    assert tuple(_status(app, b.id)) == ("active", None)
