"""Two-step verification in a real browser (issue 17): a person sets up an authenticator app on
/account/security (the QR code is drawn, the key can be read, its first code confirms it and the
recovery codes are shown once), then signs in at a demo site: after the password the hub asks for
the app's code, and the site gets the person back — and a wrong code is refused on the way."""

from __future__ import annotations

import json
import time

import pyotp
from playwright.sync_api import expect

from tests.e2e.conftest import hub_login, status

PHONE = "+14155550188"
PASSWORD = "totp-person-password-0188"


def _code(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps)


def test_set_up_an_authenticator_app_then_sign_in_with_it(deployment, chromium):
    issuer, site = deployment.issuer, deployment.sites["a"]
    created = deployment.tessera("users", "create", "--phone", PHONE, "--password", PASSWORD, "--json")
    assert created.returncode == 0, created.stderr
    json.loads(created.stdout)

    context = chromium.new_context()
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(issuer + "/account/login")
        hub_login(page, issuer, login=PHONE, password=PASSWORD)
        page.wait_for_url(issuer + "/account/")
        page.goto(issuer + "/account/security")
        expect(page.locator("#totp")).to_contain_text("Two-step verification is off")
        page.get_by_role("link", name="Set up an authenticator app").click()
        expect(page.locator("figure.qr svg")).to_be_visible()
        page.locator("summary", has_text="Can't scan?").click()
        secret = page.locator("#totp-secret").inner_text().strip()
        assert len(secret) >= 32

        page.locator("#code").fill("000000")
        page.locator("input[name=verify]").click()
        expect(page.locator("[role=alert]")).to_contain_text("not right")
        page.locator("#code").fill(_code(secret, -1))
        page.locator("input[name=verify]").click()
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        expect(page.locator("#totp")).to_contain_text("Two-step verification is on")

        # A sign-in at a site: the password, then the app's code.
        context.clear_cookies()
        page.goto(site.url + "/")
        expect(status(page)).to_have_attribute("data-state", "logged-out")
        page.locator("#login").click()
        hub_login(page, issuer, login=PHONE, password=PASSWORD)
        page.wait_for_url(issuer + "/interaction/**/mfa")
        expect(page.locator("h1")).to_have_text("Two-step verification")
        page.locator("#code").fill(_code(secret))
        page.locator("input[name=verify]").click()
        page.wait_for_url(site.url + "/**")
        expect(status(page)).to_have_attribute("data-state", "logged-in")
    finally:
        context.close()
