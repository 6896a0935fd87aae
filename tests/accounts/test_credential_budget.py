"""One shared credential-check budget (app.accounts.budget) and one shared SMS send budget,
through the pages like browsers coming from different client addresses (``REMOTE_ADDR``):
distributed guessing against one identifier, spraying one address over many identifiers, failures
on one route counting on the others, lockouts that say nothing, codes sent through two routes."""

from __future__ import annotations

import itertools
import re

import pytest

from app.accounts.models import AuditEvent
from app.extensions import db
from tests.accounts.conftest import OtpBrowser, new_phone
from tests.accounts.test_binding import send_phone_code
from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, csrf_token

_addresses = (f"203.0.113.{n}" for n in itertools.count(1))


def browser_at(app, address: str | None = None) -> OtpBrowser:
    browser = OtpBrowser(app.test_client(), ISSUER)
    browser.http.environ_base["REMOTE_ADDR"] = address or next(_addresses)
    return browser


def hub_login(browser, login: str, password: str):
    return browser.login(browser.go(f"{ISSUER}/account/login"), login, password)


def interaction_login(browser, rp, login: str, password: str):
    return browser.login(browser.start(rp), login, password)


def locked_audits(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(kind="credentials.locked")))


@pytest.fixture
def rp(factories, http):
    return RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))


def test_a_distributed_guess_against_one_identifier_is_bounded(app, budgets, factories, rp):
    budgets(defaults=True)  # TESSERA_CREDENTIAL_BUDGET_TARGET: 10 per 15 minutes
    account = factories.account()
    # Twelve addresses, one wrong password each: no address, and no (address, identifier) pair, repeats.
    statuses = [interaction_login(browser_at(app), rp, account.phone, "guess").status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    # The owner from yet another address: refused too while the budget is spent.
    owner = browser_at(app)
    refused = interaction_login(owner, rp, account.phone, account.password)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many attempts" in refused.get_data(as_text=True)
    # Audited once, when the budget ran out.
    assert [(e.account_id, e.details["budgets"]) for e in locked_audits(app)] == [(account.id, ["identifier"])]


def test_lockout_answers_the_same_for_known_and_unknown_identifiers(app, budgets, factories):
    budgets(TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
    account = factories.account(email="known@example.com")
    answers = {}
    for login in ("known@example.com", "nobody@example.com"):
        responses = [hub_login(browser_at(app), login, "guess") for _ in range(4)]
        assert [r.status_code for r in responses] == [401, 401, 401, 429]
        answers[login] = responses
    known, unknown = answers["known@example.com"], answers["nobody@example.com"]
    def scrub(response, login):  # the form shows back what was typed
        html = response.get_data(as_text=True)
        return html.replace(csrf_token(html), "CSRF").replace(login, "LOGIN")

    assert scrub(known[0], "known@example.com") == scrub(unknown[0], "nobody@example.com")
    assert known[3].get_data() == unknown[3].get_data()
    assert abs(int(known[3].headers["Retry-After"]) - int(unknown[3].headers["Retry-After"])) <= 2
    assert sorted(known[3].headers.keys()) == sorted(unknown[3].headers.keys())
    body = known[3].get_data(as_text=True)
    assert "too many attempts, try again later" in body
    for hint in ("known@example.com", "wrong", "exist", "identifier", "locked"):
        assert hint not in body.lower()
    assert [e.account_id for e in locked_audits(app)] == [account.id, None]


def test_spraying_one_address_over_many_identifiers_across_routes(app, budgets, factories, rp, outbox):
    budgets(defaults=True)  # TESSERA_CREDENTIAL_BUDGET_SPRAY: 10 distinct identifiers per hour
    sprayer = "198.51.100.23"
    known = [factories.account() for _ in range(3)]
    logins = [a.phone for a in known] + [f"user{n}@example.com" for n in range(7)]
    # Five identifiers at a site's login page, four at the hub's own login page ...
    for login in logins[:5]:
        assert interaction_login(browser_at(app, sprayer), rp, login, "Summer2024!").status_code == 401
    for login in logins[5:9]:
        assert hub_login(browser_at(app, sprayer), login, "Summer2024!").status_code == 401
    # ... and a wrong code for a tenth number on the phone route.
    phone_browser = browser_at(app, sprayer)
    code_page = phone_browser.send_code(phone_browser.otp_page(rp), new_phone())
    assert phone_browser.enter_code(code_page, "000000").status_code == 401
    # The eleventh identifier is refused, on either page; retrying one already tried is not spraying.
    assert hub_login(browser_at(app, sprayer), logins[9], "Summer2024!").status_code == 429
    assert interaction_login(browser_at(app, sprayer), rp, logins[9], "Summer2024!").status_code == 429
    assert hub_login(browser_at(app, sprayer), logins[0], "Winter2024!").status_code == 401
    # Another address is not affected, and the spray spent no target's budget.
    assert hub_login(browser_at(app), known[0].phone, known[0].password).status_code == 200


def test_failures_on_one_route_count_on_the_others_for_the_same_identifier(app, budgets, factories, rp, outbox):
    budgets(TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
    owner = factories.account(email="owner@example.com")
    session = browser_at(app)
    assert hub_login(session, owner.phone, owner.password).status_code == 200  # a success costs nothing
    # Two wrong passwords at a site's login page, one wrong code on the phone route: all on the phone.
    for _ in range(2):
        assert interaction_login(browser_at(app), rp, owner.phone, "guess").status_code == 401
    phone_browser = browser_at(app)
    code_page = phone_browser.send_code(phone_browser.otp_page(rp), owner.phone)
    assert phone_browser.enter_code(code_page, "000000").status_code == 401
    # The phone's budget is spent everywhere: the hub's own login with the right password ...
    assert hub_login(browser_at(app), owner.phone, owner.password).status_code == 429
    # ... and a merge proof naming that phone with its right password, from another person's session.
    other = factories.account()
    prover = browser_at(app)
    assert hub_login(prover, other.phone, other.password).status_code == 200
    merge = prover.go(f"{ISSUER}/account/merge/")
    proof = prover.submit(merge, {"login": owner.phone, "password": owner.password, "submit": "Continue"})
    assert proof.status_code == 429


def test_a_lockout_never_tells_that_two_identifiers_are_one_account(app, budgets, factories, rp):
    """Found by the attacker re-check: with one lockout for all of an account's identifiers, ten wrong
    passwords on its email and one try on a phone told whether the phone was the same person's."""
    budgets(TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
    owner = factories.account(email="owner@example.com")
    stranger = factories.account()
    for _ in range(3):
        assert interaction_login(browser_at(app), rp, "owner@example.com", "guess").status_code == 401
    assert interaction_login(browser_at(app), rp, "owner@example.com", "guess").status_code == 429
    own_phone = interaction_login(browser_at(app), rp, owner.phone, "guess")
    strangers_phone = interaction_login(browser_at(app), rp, stranger.phone, "guess")
    unknown_phone = interaction_login(browser_at(app), rp, new_phone(), "guess")
    assert own_phone.status_code == strangers_phone.status_code == unknown_phone.status_code == 401
    # ... and the owner still gets in with the phone and the right password.
    assert hub_login(browser_at(app), owner.phone, owner.password).status_code == 200


def test_a_logged_in_person_guessing_codes_is_bounded_across_addresses(app, budgets, factories, outbox):
    budgets(TESSERA_CREDENTIAL_BUDGET_LOGGED_IN="3 per 15 minutes")
    me = factories.account()
    browser = browser_at(app)
    assert hub_login(browser, me.phone, me.password).status_code == 200
    statuses = []
    for _ in range(2):  # two numbers, two wrong codes each, each from a new address
        page = send_phone_code(browser, new_phone())
        for _ in range(2):
            browser.http.environ_base["REMOTE_ADDR"] = next(_addresses)
            statuses.append(browser.submit(page, {"code": "000000", "submit": "Confirm"}).status_code)
    assert statuses == [200, 200, 200, 429]  # the code page answers a wrong code with a message
    assert "too many attempts" in browser.last_page.get_data(as_text=True)


# --- the SMS send budget -----------------------------------------------------------------------
def test_one_address_sending_codes_through_two_routes_draws_on_one_budget(app, budgets, factories, rp, outbox):
    budgets(defaults=True)  # TESSERA_SMS_BUDGET_ADDRESS: 10 per hour
    pumper = "192.0.2.77"
    me = factories.account()
    account_browser = browser_at(app, pumper)
    assert hub_login(account_browser, me.phone, me.password).status_code == 200
    numbers = [new_phone() for _ in range(12)]
    statuses = []
    for number in numbers[:6]:  # the phone login page
        browser = browser_at(app, pumper)
        statuses.append(browser.send_code(browser.otp_page(rp), number).status_code)
    for number in numbers[6:10]:  # adding a phone to an account
        statuses.append(send_phone_code(account_browser, number).status_code)
    assert statuses == [200] * 10
    browser = browser_at(app, pumper)
    refused = browser.send_code(browser.otp_page(rp), numbers[10])
    assert refused.status_code == 429 and "too many codes" in refused.get_data(as_text=True)
    assert send_phone_code(account_browser, numbers[11]).status_code == 429
    assert outbox.texts(numbers[10]) == [] and outbox.texts(numbers[11]) == []
    # Another address still gets its code.
    browser = browser_at(app)
    assert browser.send_code(browser.otp_page(rp), numbers[11]).status_code == 200


def test_the_send_budget_per_country_prefix_and_global(app, budgets, rp, outbox):
    budgets(TESSERA_SMS_BUDGET_PREFIX="2 per hour")
    uk = ["+447911123456", "+447911123457", "+447911123458"]
    statuses = []
    for number in uk:  # each from its own address
        browser = browser_at(app)
        statuses.append(browser.send_code(browser.otp_page(rp), number).status_code)
    assert statuses == [200, 200, 429]
    browser = browser_at(app)
    assert browser.send_code(browser.otp_page(rp), new_phone()).status_code == 200  # +1 is another prefix

    budgets(TESSERA_SMS_BUDGET_GLOBAL="2 per hour")
    statuses = []
    for _ in range(3):
        browser = browser_at(app)
        statuses.append(browser.send_code(browser.otp_page(rp), new_phone()).status_code)
    assert statuses == [200, 200, 429]


def test_a_code_that_could_not_be_sent_costs_nothing(app, budgets, rp, outbox):
    budgets(TESSERA_SMS_BUDGET_ADDRESS="1 per hour")
    app.config["TESSERA_SMS_SENDER"] = "webhook"  # no TESSERA_SMS_WEBHOOK_URL: the sender fails
    browser = browser_at(app)
    page = browser.otp_page(rp)
    assert browser.send_code(page, new_phone()).status_code == 503
    app.config["TESSERA_SMS_SENDER"] = "file"  # the outbox fixture restores it
    number = new_phone()
    assert browser.send_code(page, number).status_code == 200
    assert re.fullmatch(r"\d{6}", outbox.code(number))


# --- shared across processes (Redis) ------------------------------------------------------------
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database number no other suite here uses

_PROBE = """
import json, sys
from tests.conftest import ISSUER, make_test_app
from tests.rp import Browser

database_url, redis_url, secret, login, password, attempts = sys.argv[1:]
app = make_test_app(database_url, TESSERA_REDIS_URL=redis_url, SECRET_KEY=secret,
                    TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
statuses = []
for n in range(int(attempts)):
    browser = Browser(app.test_client(), ISSUER)
    browser.http.environ_base["REMOTE_ADDR"] = f"203.0.113.{200 + n}"
    statuses.append(browser.login(browser.go(ISSUER + "/account/login"), login, password).status_code)
print(json.dumps(statuses))
"""


def _probe(database_url, secret, login, password, attempts) -> list[int]:
    import json
    import subprocess
    import sys

    from tests.processes import REPO_ROOT

    result = subprocess.run([sys.executable, "-c", _PROBE, database_url, REDIS_URL, secret, login, password,
                             str(attempts)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_budget_is_shared_by_processes_through_redis(database_url, factories):
    redis = pytest.importorskip("redis")
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    import secrets

    secret = "budget-test-" + secrets.token_hex(24)  # its own key digests: nothing shared with another run
    account = factories.account()
    try:
        # One process spends the account's budget; another process, with its own memory, is refused.
        assert _probe(database_url, secret, account.phone, "guess", 3) == [401, 401, 401]
        assert _probe(database_url, secret, account.phone, account.password, 1) == [429]
    finally:
        for key in connection.scan_iter("LIMITS:LIMITER/budget/*"):
            connection.delete(key)
