"""Real-browser fixtures: a live hub, its outbox worker, three partner sites, and Debian's Chromium
driven by Playwright.

* The hub: a fresh SQLite file in a temporary directory, ``tessera db upgrade``, ``tessera demo
  seed`` (the demo user), ``python -m examples.demo_setup`` (the partner sites' tenants and
  clients), then ``tessera serve`` on a free port with ``TESSERA_ALLOW_PRIVATE_OUTBOUND=1``, and
  ``tessera worker`` when the hub has that command (back-channel logout deliveries).
* The sites (``python -m examples.rp_site``): A on http://127.0.0.1, B on http://localhost — two
  different *sites* for the browser's cookies — and C on http://127.0.0.1, which only the login
  chain may log in (it does no silent sign-on of its own). B's tenant lists C in its login chain.
* The browser: ``/usr/bin/chromium`` (``E2E_CHROMIUM``, which the Makefile sets from ``CHROMIUM``),
  headless. Playwright never downloads a browser; when Chromium is missing, every browser test is
  skipped with a loud reason (``make e2e-deps``) — and under ``CI=true`` it FAILS instead, so a green
  CI run has run them. The relying party's own checks (``test_rp_site.py``, ``test_rp_events.py``)
  need no browser and always run.
* The sites run with ``--debug-endpoints``: tests read and seed their business data
  (``Site.business``, ``Site.seed``); ``Deployment.tessera`` runs operator commands against the hub's
  database.

Every process gets its own process group and is killed at teardown.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import GENEROUS_BUDGETS, IN_CI
from tests.processes import REPO_ROOT, TESSERA, Proc, Processes, free_port  # noqa: F401

CHROMIUM = os.environ.get("E2E_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

USER_LOGIN = "+14155550123"  # the demo user of `tessera demo seed`
USER_PASSWORD = "demo-password"


def status(page):
    """The demo site's login-state element."""
    return page.locator("#status")


def hub_login(page, issuer: str, login: str = USER_LOGIN, password: str = USER_PASSWORD) -> None:
    """On the hub's login page: fill the form and submit it (and approve consent if asked)."""
    page.wait_for_url(re.compile("^" + re.escape(issuer) + "/"))
    form = page.locator("form:has(input[name=password])")
    form.locator("input[name=login]").fill(login)
    form.locator("input[name=password]").fill(password)
    form.locator("[type=submit]").click()
    page.wait_for_load_state()
    if page.url.startswith(issuer + "/") and page.locator("[name=approve]").count():
        page.locator("[name=approve]").click()

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def _chromium_missing_reason() -> str | None:
    if not os.path.exists(CHROMIUM):
        return (f"!! REAL-BROWSER E2E TESTS SKIPPED: {CHROMIUM} is not installed "
                "(run `make e2e-deps`, i.e. apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "!! REAL-BROWSER E2E TESTS SKIPPED: the playwright Python package is not installed"
    return None


def _require_chromium() -> None:
    """Skip the browser tests without Chromium — or, under CI=true, fail them."""
    reason = _chromium_missing_reason()
    if reason and IN_CI:
        pytest.fail(reason.replace("SKIPPED", "FAILED (CI=true: a CI run must run them)"), pytrace=False)
    if reason:
        pytest.skip(reason)


# --- processes: tests/processes.py ---------------------------------------------------------------


def _tessera(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([TESSERA, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _must(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@dataclass
class Site:
    client_id: str
    client_secret: str
    name: str
    url: str  # public origin, no trailing slash
    proc: Proc | None = None

    def sessions(self) -> list[dict]:
        return requests.get(f"{self.url}/debug/sessions", timeout=5).json()["sessions"]

    def logouts(self) -> list[dict]:
        return requests.get(f"{self.url}/debug/sessions", timeout=5).json()["logouts"]

    # the site runs with --debug-endpoints
    def business(self, sub: str) -> dict:
        return requests.get(f"{self.url}/debug/business", params={"sub": sub}, timeout=5).json()

    def seed(self, sub: str, **data) -> dict:
        response = requests.post(f"{self.url}/debug/seed", json={"sub": sub, **data}, timeout=5)
        response.raise_for_status()
        return response.json()


@dataclass
class Deployment:
    issuer: str
    sites: dict[str, Site]
    processes: Processes
    has_worker: bool
    env: dict | None = None
    workdir: Path | None = None

    def logs(self) -> str:
        return self.processes.logs()

    def tessera(self, *args: str) -> subprocess.CompletedProcess:
        """``tessera …`` against this hub's database (operators' commands: users, merges, …)."""
        return _tessera(list(args), self.env, self.workdir)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, request):
    _require_chromium()
    workdir = tmp_path_factory.mktemp("e2e")
    hub_port = free_port()
    # A module may name the hub's host (``HUB_HOST``): passkeys need a domain for their RP ID
    # (``localhost``), never an IP address.
    issuer = f"http://{getattr(request.module, 'HUB_HOST', '127.0.0.1')}:{hub_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_ISSUER=issuer,
        TESSERA_DATABASE_URL=f"sqlite:///{workdir / 'tessera.db'}",
        TESSERA_INSTANCE_DIR=str(workdir / "instance"),
        TESSERA_SECRET_KEY="e2e-test-secret-key-0123456789abcdef0123456789",
        TESSERA_ALLOW_PRIVATE_OUTBOUND="1",
        PYTHONUNBUFFERED="1",
        **GENEROUS_BUDGETS,  # the suite logs in many times from one address
    )
    sites = {
        "a": Site("e2e-site-a", f"e2e-site-a-{secrets.token_urlsafe(24)}", "Site A", f"http://127.0.0.1:{free_port()}"),
        "b": Site("e2e-site-b", f"e2e-site-b-{secrets.token_urlsafe(24)}", "Site B", f"http://localhost:{free_port()}"),
        "c": Site("e2e-site-c", f"e2e-site-c-{secrets.token_urlsafe(24)}", "Site C", f"http://127.0.0.1:{free_port()}"),
    }
    specs = [
        {"client_id": sites["a"].client_id, "client_secret": sites["a"].client_secret, "name": "Site A",
         "base_url": sites["a"].url, "tenant": "e2e-north", "tenant_name": "North Trading Co.", "color": "#1f6f43"},
        {"client_id": sites["b"].client_id, "client_secret": sites["b"].client_secret, "name": "Site B",
         "base_url": sites["b"].url, "tenant": "e2e-south", "tenant_name": "South Logistics Ltd.", "color": "#8a2f5d",
         "login_chain": [sites["c"].client_id]},
        {"client_id": sites["c"].client_id, "client_secret": sites["c"].client_secret, "name": "Site C",
         "base_url": sites["c"].url, "tenant": "e2e-east", "tenant_name": "East Media Group", "color": "#5d2f8a"},
    ]
    _must(_tessera(["db", "upgrade"], env, workdir), "tessera db upgrade")
    _must(_tessera(["demo", "seed"], env, workdir), "tessera demo seed")
    setup = subprocess.run([sys.executable, "-m", "examples.demo_setup", "--sites-json", json.dumps(specs)],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    _must(setup, "examples.demo_setup")

    processes = Processes(workdir, env)
    try:
        hub = processes.start("hub", [TESSERA, "serve", "--host", "127.0.0.1", "--port", str(hub_port),
                                      "--workers", "1", "--threads", "8"])
        has_worker = _tessera(["worker", "--help"], env, workdir).returncode == 0
        if has_worker:
            processes.start("worker", [TESSERA, "worker"])
        for key, site in sites.items():
            port = site.url.rsplit(":", 1)[1]
            args = [sys.executable, "-m", "examples.rp_site", "--host", "127.0.0.1", "--port", port,
                    "--base-url", site.url, "--name", site.name, "--issuer", issuer,
                    "--client-id", site.client_id, "--client-secret", site.client_secret,
                    "--secret-key", f"e2e-{key}-secret-key-0123456789", "--debug-endpoints"]
            if key == "c":
                args.append("--no-silent-login")  # only the hub's login chain may log C in
            site.proc = processes.start(f"site-{key}", args)
        processes.wait_until_up(hub, f"{issuer}/.well-known/openid-configuration")
        for site in sites.values():
            processes.wait_until_up(site.proc, f"{site.url.replace('localhost', '127.0.0.1')}/healthz")
        yield Deployment(issuer=issuer, sites=sites, processes=processes, has_worker=has_worker, env=env,
                         workdir=workdir)
    finally:
        processes.stop_all()


# --- the browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium():
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(chromium):
    """A fresh browser profile (no cookies) per test."""
    ctx = chromium.new_context()
    ctx.set_default_timeout(15_000)
    ctx.set_default_navigation_timeout(20_000)
    try:
        yield ctx
    finally:
        ctx.close()
