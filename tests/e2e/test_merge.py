"""Account merging seen from two partner sites, in a real browser with live processes (issue 6,
"How it is checked", first bullet; design flow 5; seed 004).

Two accounts (two phone numbers of one person) each log in at site A and site B, so each site
knows both of them, by its own pairwise subs. Both sites hold coins, points and favourites for
both. An operator merges them (``tessera merges create``); ``tessera worker`` pushes an "account
merged" Security Event Token (RFC 8417, pushed per RFC 8935) to each site's ``/events``; both sites
converge — coins summed with an "account merge credit" ledger line, points summed and the member
level recomputed, favourites unioned, the absorbed sub's data and sessions gone. Then the
absorbed account's old phone number (with the survivor's password: after a merge the survivor's
password guards every identifier) logs in to the survivor at both sites, with the subs the
sites knew for the survivor before.
"""

from __future__ import annotations

import json
import time

import requests
from playwright.sync_api import Page, expect

from tests.e2e.conftest import hub_login, status

SURVIVOR = {"phone": "+14155550161", "password": "survivor-password-1", "name": "Mei Survivor"}
ABSORBED = {"phone": "+14155550162", "password": "absorbed-password-2", "name": "Mei Absorbed"}
CONVERGE_TIMEOUT = 15.0


def log_in(page: Page, site, issuer: str, login: str, password: str) -> str:
    """An interactive login at ``site`` (no hub session yet in this context); returns the sub."""
    page.goto(site.url + "/")
    expect(status(page)).to_have_attribute("data-state", "logged-out")
    page.locator("#login").click()
    hub_login(page, issuer, login, password)
    page.wait_for_url(site.url + "/**")
    expect(status(page)).to_have_attribute("data-state", "logged-in")
    return page.locator("#sub").inner_text()


def silent_sub(page: Page, site) -> str:
    """With a hub session in this context: open ``site`` and let its prompt=none sign-on run."""
    page.goto(site.url + "/")
    expect(status(page)).to_have_attribute("data-state", "logged-in")
    return page.locator("#sub").inner_text()


def create_account(deployment, person: dict) -> dict:
    result = deployment.tessera("users", "create", "--phone", person["phone"], "--password", person["password"],
                                "--name", person["name"], "--json")
    assert result.returncode == 0, f"tessera users create: {result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def poll(fn, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_merged_accounts_converge_at_both_sites_and_old_phone_lands_on_the_survivor(deployment, chromium):
    a, b, issuer = deployment.sites["a"], deployment.sites["b"], deployment.issuer
    survivor_account = create_account(deployment, SURVIVOR)
    absorbed_account = create_account(deployment, ABSORBED)

    # 1. each account logs in at A (interactively) and B (silently): both sites know both subs
    subs: dict[str, dict[str, str]] = {}
    for who, person in (("survivor", SURVIVOR), ("absorbed", ABSORBED)):
        ctx = chromium.new_context()
        ctx.set_default_timeout(15_000)
        try:
            page = ctx.new_page()
            subs[who] = {"a": log_in(page, a, issuer, person["phone"], person["password"])}
            subs[who]["b"] = silent_sub(page, b)
        finally:
            ctx.close()
    for site in "ab":
        assert subs["survivor"][site] != subs["absorbed"][site]
    assert subs["absorbed"]["a"] in {s["sub"] for s in a.sessions()}

    # 2. business data at both sites for both subs
    seeds = {
        "a": {"survivor": {"coins": 100, "points": 80, "favourites": ["green tea", "desk lamp"]},
              "absorbed": {"coins": 50, "points": 60, "favourites": ["desk lamp", "kite"]}},
        "b": {"survivor": {"coins": 30, "points": 250, "favourites": ["umbrella"]},
              "absorbed": {"coins": 20, "points": 90, "favourites": ["bicycle bell"]}},
    }
    for key, site in (("a", a), ("b", b)):
        for who in ("survivor", "absorbed"):
            site.seed(subs[who][key], **seeds[key][who])
    assert a.business(subs["survivor"]["a"])["level"] == "bronze"
    assert b.business(subs["survivor"]["b"])["level"] == "silver"

    # 3. the operator merges the two accounts
    result = deployment.tessera("merges", "create", "--survivor", str(survivor_account["id"]),
                                "--absorbed", str(absorbed_account["id"]), "--reason", "e2e", "--json")
    assert result.returncode == 0, f"tessera merges create: {result.stdout}\n{result.stderr}"
    merge = json.loads(result.stdout)
    assert merge["status"] == "completed", merge
    told = set(merge["report"].get("clients_told") or [])
    assert {a.client_id, b.client_id} <= told, merge["report"]

    # 4. the worker pushes the SETs; both sites converge
    expected = {
        "a": {"coins": 150, "points": 140, "level": "silver", "favourites": ["desk lamp", "green tea", "kite"],
              "credit": 50},
        "b": {"coins": 50, "points": 340, "level": "gold", "favourites": ["bicycle bell", "umbrella"], "credit": 20},
    }

    def converged() -> bool:
        for key, site in (("a", a), ("b", b)):
            data = site.business(subs["survivor"][key])
            if data["coins"] != expected[key]["coins"] or site.business(subs["absorbed"][key])["exists"]:
                return False
        return True

    assert poll(converged, CONVERGE_TIMEOUT), (
        f"the sites did not converge within {CONVERGE_TIMEOUT} s:\n"
        + "\n".join(f"{k}: survivor {s.business(subs['survivor'][k])}\n   absorbed {s.business(subs['absorbed'][k])}"
                    for k, s in (("a", a), ("b", b)))
        + "\n" + deployment.logs()
    )
    for key, site in (("a", a), ("b", b)):
        want = expected[key]
        data = site.business(subs["survivor"][key])
        assert (data["coins"], data["points"], data["level"], data["favourites"]) == \
            (want["coins"], want["points"], want["level"], want["favourites"]), (key, data)
        credits = [line for line in data["ledger"] if line["label"] == "account merge credit"]
        assert [line["amount"] for line in credits] == [want["credit"]], (key, data["ledger"])
        assert sum(line["amount"] for line in data["ledger"]) == data["coins"]
        gone = site.business(subs["absorbed"][key])
        assert not gone["exists"] and gone["coins"] == 0 and gone["favourites"] == [], (key, gone)
        assert gone["merged_into"] == subs["survivor"][key], (key, gone)
        # the absorbed sub's local sessions are gone (the SET, and the hub's back-channel logout)
        assert subs["absorbed"][key] not in {s["sub"] for s in site.sessions()}, (key, site.sessions())

    # 5. the absorbed account's old phone, with the survivor's password, lands on the survivor
    ctx = chromium.new_context()
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        assert log_in(page, a, issuer, ABSORBED["phone"], SURVIVOR["password"]) == subs["survivor"]["a"]
        expect(page.locator("#coins")).to_have_text("150")
        expect(page.locator("#level")).to_have_text("silver")
        expect(page.locator("#ledger")).to_contain_text("account merge credit")
        assert silent_sub(page, b) == subs["survivor"]["b"]
        expect(page.locator("#coins")).to_have_text("50")
        expect(page.locator("#level")).to_have_text("gold")
    finally:
        ctx.close()
    # ... and so does the survivor's own phone, logging in at B first this time
    ctx = chromium.new_context()
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        assert log_in(page, b, issuer, SURVIVOR["phone"], SURVIVOR["password"]) == subs["survivor"]["b"]
        assert silent_sub(page, a) == subs["survivor"]["a"]
    finally:
        ctx.close()

    # 6. each site acted on one SET of this merge
    for site in (a, b):
        snapshot = requests.get(f"{site.url}/debug/business", timeout=5).json()
        acted = [e for e in snapshot["events"] if e.get("txn") == f"merge-{merge['id']}" and not e.get("duplicate")]
        assert len(acted) == 1, snapshot["events"]
