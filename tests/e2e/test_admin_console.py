"""The admin console (/admin) in a real browser (issue 16): an operator — the demo user, whom
``tessera demo seed`` makes a super admin — logs in through the hub's own login page, finds a
person by their phone number as they would type it (keyboard only), unlocks them (an operator
locked them with ``tessera users lock``), ends their sessions, rotates a client's secret, and
finds each of those actions in the audit log; follows an import job's progress and conflicts,
disables an upstream, and reads the merges. The person then reads on /account that an
administrator unlocked them. The console is used at a phone's width (390x844): no page may scroll
sideways."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import hub_login, status

PERSON_PHONE = "+14155550177"
PERSON_TYPED = "(415) 555-0177"  # as the person would say it
PERSON_PASSWORD = "person-password-0177"
PHONE_VIEWPORT = {"width": 390, "height": 844}


def _must(result, what: str):
    assert result.returncode == 0, f"{what}: {result.stdout}\n{result.stderr}"
    return result


def _person_logs_in_at(page: Page, site, issuer: str) -> None:
    page.goto(site.url + "/")
    expect(status(page)).to_have_attribute("data-state", "logged-out")
    page.locator("#login").click()
    hub_login(page, issuer, login=PERSON_PHONE, password=PERSON_PASSWORD)
    page.wait_for_url(site.url + "/**")
    expect(status(page)).to_have_attribute("data-state", "logged-in")


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], f"the page is {width}px wide at a 390px viewport"


def _search_with_the_keyboard(page: Page, typed: str) -> None:
    """Tab to the search box (no mouse), type, press Enter."""
    page.locator("body").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "q":
            break
    else:
        raise AssertionError("the search box cannot be reached with Tab")
    page.keyboard.type(typed)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/admin/people\?.*q=.*"))


def test_operator_unlocks_ends_sessions_rotates_a_secret_and_audits_it(deployment, chromium):
    issuer, site = deployment.issuer, deployment.sites["a"]
    created = _must(deployment.tessera("users", "create", "--phone", PERSON_PHONE, "--password", PERSON_PASSWORD,
                                       "--name", "Pat Person", "--json"), "users create")
    person_id = json.loads(created.stdout)["id"]
    _must(deployment.tessera("users", "lock", str(person_id), "--reason", "reported stolen phone"), "users lock")

    operator = chromium.new_context(viewport=PHONE_VIEWPORT)
    person = chromium.new_context()
    for ctx in (operator, person):
        ctx.set_default_timeout(15_000)
    try:
        page = operator.new_page()
        # 1. Log in to the console through the hub's own login page (the demo user is a super admin).
        page.goto(issuer + "/admin/")
        hub_login(page, issuer)
        page.wait_for_url(issuer + "/admin/")
        expect(page.locator("h1")).to_have_text("Dashboard")
        expect(page.locator("#chart-logins svg")).to_be_visible()
        actor = re.search(r"admin:\d+", page.locator(".who").inner_text()).group(0)

        # 2. Find the person by phone, keyboard only.
        page.goto(issuer + "/admin/people")
        _search_with_the_keyboard(page, PERSON_TYPED)
        page.get_by_role("link", name="Pat Person").click()
        page.wait_for_url(f"{issuer}/admin/people/{person_id}")
        expect(page.locator("#status")).to_have_text("locked")
        _no_sideways_scroll(page)

        # 3. Unlock them: they can log in again (and get a session at site A).
        page.get_by_role("button", name="Unlock").click()
        expect(page.locator("#status")).to_have_text("active")
        expect(page.get_by_role("status")).to_contain_text("Account unlocked")
        _person_logs_in_at(person.new_page(), site, issuer)
        page.reload()
        expect(page.locator("#sessions h2")).to_have_text("Live sessions (1)")
        _no_sideways_scroll(page)

        # 4. End their sessions.
        page.get_by_role("button", name="End all sessions").click()
        expect(page.get_by_role("status")).to_contain_text("Sessions ended")
        expect(page.locator("#sessions h2")).to_have_text("Live sessions (0)")
        _no_sideways_scroll(page)

        # 5. Rotate a client's secret: shown once, never again.
        page.goto(f"{issuer}/admin/clients/demo-web")
        page.get_by_role("button", name="Rotate secret").click()
        secret = page.locator("#new-secret").inner_text().strip()
        assert len(secret) >= 32
        page.goto(f"{issuer}/admin/clients/demo-web")
        assert secret not in page.content()

        # 6. Each action is in the audit log, with the operator as actor.
        page.goto(f"{issuer}/admin/audit?actor={actor}")
        rows = page.locator("#audit-events")
        for kind in ("account.unlocked", "account.logged_out", "client.secret_rotated"):
            expect(rows).to_contain_text(kind)
        page.goto(f"{issuer}/admin/audit?person={person_id}")
        expect(page.locator("#audit-events")).to_contain_text("account.locked")  # the CLI's lock
        expect(page.locator("#audit-events")).to_contain_text("operator:cli")
        _no_sideways_scroll(page)

        # 7. An import job: its progress and its conflicts, at a phone's width.
        legacy = deployment.workdir / "legacy-members-exported-from-the-old-crm-system.jsonl"
        legacy.write_text("".join(json.dumps({"legacy_id": f"m{i}", "phone": f"+1212555{i:04d}", "phone_verified": True,
                                              "username": "pat"}) + "\n" for i in range(3)))
        _must(deployment.tessera("import", "plan", str(legacy), "--tenant", "e2e-north",
                                 "--report-dir", str(deployment.workdir / "plan-report")), "import plan")
        page.goto(f"{issuer}/admin/imports")
        expect(page.locator("#imports progress").first).to_be_visible()
        _no_sideways_scroll(page)
        page.locator("#imports a").first.click()
        expect(page.locator("#job-status")).to_have_text("completed")
        expect(page.locator("#job-progress")).to_have_attribute("value", "100.0")
        expect(page.locator("#conflicts-by-kind")).to_contain_text("duplicate_username")
        expect(page.locator("#conflict-report")).to_be_visible()
        _no_sideways_scroll(page)

        # 8. An upstream: disabled from the console.
        _must(deployment.tessera("upstreams", "create", "--slug", "e2e-up", "--name", "E2E Upstream",
                                 "--client-id", "e2e-upstream-client", "--claim-map", "openid=sub",
                                 "--authorization-endpoint", "https://upstream.example/oauth/authorize",
                                 "--token-endpoint", "https://upstream.example/oauth/token",
                                 "--userinfo-endpoint", "https://upstream.example/oauth/userinfo"), "upstreams create")
        page.goto(f"{issuer}/admin/upstreams")
        page.get_by_role("button", name="Disable E2E Upstream").click()
        expect(page.locator("#upstream-e2e-up .upstream-state")).to_have_text("disabled")
        _no_sideways_scroll(page)
        page.goto(f"{issuer}/admin/merges")
        expect(page.locator("h1")).to_have_text("Merges")
        _no_sideways_scroll(page)

        # 9. The person reads who unlocked them: an administrator, not which one.
        own = person.new_page()
        own.goto(issuer + "/account/")
        hub_login(own, issuer, login=PERSON_PHONE, password=PERSON_PASSWORD)
        own.wait_for_url(issuer + "/account/")
        events = own.locator("#events")
        expect(events).to_contain_text("account.unlocked by an administrator")
        expect(events).to_contain_text("account.locked by an administrator")
        assert actor not in events.inner_text() and "operator:cli" not in events.inner_text()
    finally:
        operator.close()
        person.close()
