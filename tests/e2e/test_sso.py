"""Single sign-on and single logout across partner sites, in a real browser (issue 3, "How it is
checked"; design flows 2 and 8).

1. Log in at site A, open site B → B is logged in and no hub page was shown (a top-level
   ``prompt=none`` authorization).
2. B and A open in two tabs, log out at B → the hub ends its session; A's front-channel logout
   endpoint was called and A's page reports logged out after a reload; A's back-channel logout
   endpoint received a valid logout token and A's server-side session is gone.
3. The login chain: a login at B (whose tenant lists C) logs C in through C's
   ``initiate_login_uri``, without C ever being visited.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e.conftest import hub_login, status

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def _hub_has_login_chain() -> bool:
    """The login chain is being built: until some hub code beyond the model column mentions it,
    its test is an expected failure."""
    for path in APP_DIR.rglob("*.py"):
        if path.name == "models.py":
            continue
        if "login_chain" in path.read_text(errors="replace"):
            return True
    return False


def log_in_at(page: Page, site, issuer: str) -> None:
    page.goto(site.url + "/")
    # no hub session yet: the silent attempt comes back with login_required
    expect(status(page)).to_have_attribute("data-state", "logged-out")
    page.locator("#login").click()
    hub_login(page, issuer)
    page.wait_for_url(site.url + "/**")
    expect(status(page)).to_have_attribute("data-state", "logged-in")


def hub_pages_shown(page: Page, issuer: str) -> list[str]:
    """Start recording documents of the hub answered with a page (not a redirect)."""
    shown: list[str] = []

    def on_response(response):
        req = response.request
        if req.resource_type == "document" and req.frame == page.main_frame \
                and response.url.startswith(issuer + "/") and response.status not in (301, 302, 303, 307, 308):
            shown.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    return shown


def poll(fn, timeout: float = 10.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_login_at_a_then_b_is_logged_in_without_a_prompt(deployment, context):
    a, b = deployment.sites["a"], deployment.sites["b"]
    page_a = context.new_page()
    log_in_at(page_a, a, deployment.issuer)
    sub_a = page_a.locator("#sub").inner_text()
    assert sub_a

    page_b = context.new_page()
    shown = hub_pages_shown(page_b, deployment.issuer)
    page_b.goto(b.url + "/")
    expect(status(page_b)).to_have_attribute("data-state", "logged-in")
    assert page_b.locator("input[name=password]").count() == 0
    assert not shown, f"the hub showed a page to site B's visitor: {shown}"
    sub_b = page_b.locator("#sub").inner_text()
    # pairwise subjects: each site sees its own sub for the same person
    assert sub_b and sub_b != sub_a
    local = [s for s in b.sessions() if s["sub"] == sub_b]
    assert local and local[0]["via"] in ("silent", "initiate-login"), local


def test_logout_at_b_logs_out_a_by_front_and_back_channel(deployment, context):
    a, b, issuer = deployment.sites["a"], deployment.sites["b"], deployment.issuer
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
    assert metadata.get("end_session_endpoint") == f"{issuer}/logout", "no end_session_endpoint in discovery"
    assert metadata.get("frontchannel_logout_supported") is True
    assert metadata.get("backchannel_logout_supported") is True

    page_a = context.new_page()
    log_in_at(page_a, a, issuer)
    sid_a, sub_a = page_a.locator("#sid").inner_text(), page_a.locator("#sub").inner_text()
    assert sid_a and sid_a != "None", "the ID token at A carries no sid (needed by front-channel logout)"
    assert any(s["sid"] == sid_a for s in a.sessions())

    page_b = context.new_page()
    page_b.goto(b.url + "/")
    expect(status(page_b)).to_have_attribute("data-state", "logged-in")
    sid_b = page_b.locator("#sid").inner_text()

    page_b.locator("#logout").click()
    # the hub ends its session, loads the other sites' front-channel iframes, then redirects to
    # B's post_logout_redirect_uri with B's state
    page_b.wait_for_url(b.url + "/**", timeout=20_000)
    expect(status(page_b)).to_have_attribute("data-state", "logged-out")
    expect(page_b.locator("#logged-out-message")).to_be_visible()
    assert not any(s["sid"] == sid_b for s in b.sessions())

    # front-channel: A was told in an iframe, with iss and sid
    front = poll(lambda: [e for e in a.logouts() if e["channel"] == "front" and e.get("sid") == sid_a], timeout=5)
    assert front, f"A's frontchannel_logout_uri was not called with sid {sid_a}: {a.logouts()}\n{deployment.logs()}"
    page_a.reload()
    expect(status(page_a)).to_have_attribute("data-state", "logged-out")

    # back-channel: A received a valid logout token and its server-side session is gone
    back = poll(lambda: [e for e in a.logouts() if e["channel"] == "back" and not e.get("error")
                         and (e.get("sid") == sid_a or (not e.get("sid") and e.get("sub") == sub_a))], timeout=10)
    assert back, (f"no valid back-channel logout token reached A within 10 s (worker: "
                  f"{deployment.has_worker}): {a.logouts()}\n{deployment.logs()}")
    assert not any(s["sid"] == sid_a for s in a.sessions())
    rejected = [e for e in a.logouts() if e["channel"] == "back" and e.get("error")]
    assert not rejected, f"A rejected logout tokens: {rejected}"

    # and the hub session is over: a fresh visit to A does not sign in silently
    page_a.goto(a.url + "/login?prompt=none")
    page_a.wait_for_url(a.url + "/**")
    expect(status(page_a)).to_have_attribute("data-state", "logged-out")


@pytest.mark.xfail(not _hub_has_login_chain(), reason="login chain not built yet", strict=False)
def test_login_chain_logs_in_a_third_site(deployment, context):
    b, c, issuer = deployment.sites["b"], deployment.sites["c"], deployment.issuer
    before = {s["sid"] for s in c.sessions()}
    page_b = context.new_page()
    visited_c: list[str] = []
    page_b.on("request", lambda r: visited_c.append(r.url) if r.url.startswith(c.url + "/initiate-login") else None)
    log_in_at(page_b, b, issuer)
    sid_b = page_b.locator("#sid").inner_text()

    # the hub walked the browser through C's initiate_login_uri (a top-level redirect) ...
    assert visited_c, "the hub never sent the browser to site C's initiate_login_uri"
    # ... and C completed a silent authorization: it has a session for this hub session
    new = [s for s in c.sessions() if s["sid"] not in before]
    assert new, f"site C has no new session after the login chain: {c.sessions()}\n{deployment.logs()}"
    assert all(s["via"] == "initiate-login" for s in new), new
    assert sid_b in {s["sid"] for s in new}

    page_c = context.new_page()  # C does no silent sign-on of its own: only the chain logged it in
    page_c.goto(c.url + "/")
    expect(status(page_c)).to_have_attribute("data-state", "logged-in")


def test_open_page_notices_a_logout_elsewhere_and_the_cross_site_check_fails_safe(deployment, context):
    """Session Management 1.0, an extra: A's open page (same site as the hub) notices the logout
    at B through the check_session_iframe and updates itself; on B (another site, so the hub's
    browser-state cookie is out of the iframe's reach) the check answers "error" and the page
    just stops checking — it must not loop through the hub."""
    a, b, issuer = deployment.sites["a"], deployment.sites["b"], deployment.issuer
    page_a = context.new_page()
    log_in_at(page_a, a, issuer)
    page_b = context.new_page()
    page_b.goto(b.url + "/")
    expect(status(page_b)).to_have_attribute("data-state", "logged-in")
    assert page_b.locator("#op-check-session").count() == 1, "B's page embeds no check_session_iframe"

    navigations_b: list[str] = []
    page_b.on("framenavigated", lambda frame: navigations_b.append(frame.url) if frame == page_b.main_frame else None)
    navigations_a: list[str] = []
    page_a.on("framenavigated", lambda frame: navigations_a.append(frame.url) if frame == page_a.main_frame else None)
    page_b.wait_for_timeout(6_000)  # more than one check interval
    assert navigations_b == [], f"B's page navigated on its own: {navigations_b}"
    assert navigations_a == [], f"A's page navigated on its own while nothing changed: {navigations_a}"

    page_b.locator("#logout").click()
    page_b.wait_for_url(b.url + "/**", timeout=20_000)
    # no reload of A: its check notices the change within a few check intervals
    expect(status(page_a)).to_have_attribute("data-state", "logged-out", timeout=15_000)


def test_hub_initiated_login_lands_on_the_target_page_of_the_partner(deployment, context):
    """Third-party-initiated login (OIDC Core 4): the hub sends the browser to C's
    initiate_login_uri with a target on C; with a hub session C logs in without a prompt and
    lands on the target."""
    a, c, issuer = deployment.sites["a"], deployment.sites["c"], deployment.issuer
    page = context.new_page()
    log_in_at(page, a, issuer)
    shown = hub_pages_shown(page, issuer)
    target = f"{c.url}/?welcome=1"
    page.goto(f"{issuer}/initiate?" + requests.compat.urlencode({"client_id": c.client_id, "target_link_uri": target}))
    page.wait_for_url(target)
    expect(status(page)).to_have_attribute("data-state", "logged-in")
    assert not shown, f"the hub showed a page: {shown}"
    sub = page.locator("#sub").inner_text()
    assert [s["via"] for s in c.sessions() if s["sub"] == sub][-1] == "initiate-login"


_ASK_CHECK_SESSION = """async ([src, message, origin]) => {
  const frame = document.createElement("iframe");
  frame.src = src;
  await new Promise((loaded) => { frame.onload = loaded; document.body.appendChild(frame); });
  return await new Promise((answer) => {
    window.addEventListener("message", (e) => { if (e.origin === origin) answer(e.data); });
    frame.contentWindow.postMessage(message, origin);
  });
}"""


def test_check_session_iframe_reports_changed_once_the_session_is_idle_expired(deployment, context):
    """Session Management 1.0 with idle timeouts: the browser-state cookie carries the session's
    idle deadline, and past it the OP iframe answers "changed" (the session is over on the hub
    too), not "unchanged". The browser's clock is moved, not the test's."""
    import hashlib

    a, issuer = deployment.sites["a"], deployment.issuer
    page = context.new_page()
    page.goto(issuer + "/account/login")
    hub_login(page, issuer)
    page.wait_for_url(issuer + "/account/**")
    cookie = next(c["value"] for c in context.cookies(issuer) if c["name"] == "tessera_bs")
    state, _, deadline = cookie.rpartition(".")
    assert state and deadline.isdigit(), f"the browser-state cookie carries no idle deadline: {cookie!r}"
    assert 0 < int(deadline) - time.time() <= 2 * 3600 + 60  # TESSERA_SESSION_IDLE_TTL's default

    salt = "0123456789abcdef"
    digest = hashlib.sha256(f"{a.client_id} {a.url} {state} {salt}".encode()).hexdigest()
    message = f"{a.client_id} {digest}.{salt}"
    rp_page = context.new_page()  # an RP page (site A: same site as the hub, so the cookie is readable)
    rp_page.goto(a.url + "/healthz")
    ask = [issuer + "/session/check", message, issuer]
    assert rp_page.evaluate(_ASK_CHECK_SESSION, ask) == "unchanged"

    context.clock.set_fixed_time(int(deadline) + 5)  # the browser idles past the deadline
    rp_page.reload()
    assert rp_page.evaluate(_ASK_CHECK_SESSION, ask) == "changed"
