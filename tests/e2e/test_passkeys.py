"""Passkeys in a real browser (issue 17): Chromium's virtual authenticator (DevTools protocol
``WebAuthn.addVirtualAuthenticator``: CTAP2, built in, resident keys, user verification) stands
for the person's device. The person adds a passkey on /account/security, then logs in to site A
with their password and the passkey as the second step, then with the passkey alone through the
login field's autofill (conditional mediation), then with its button — each login's ID token at the
site says ``urn:tessera:loa:3``.

The hub runs on http://localhost (``HUB_HOST``): WebAuthn needs a secure context (localhost is one)
and a domain for its RP ID, never an IP address. Run alone:
``PYTHONPATH=$PWD E2E_CHROMIUM=/usr/bin/chromium .venv/bin/python -m pytest tests/e2e/test_passkeys.py -q``
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import hub_login, status

HUB_HOST = "localhost"
PERSON_PHONE = "+14155550188"
PERSON_PASSWORD = "passkey-person-0188"
LOA3 = "urn:tessera:loa:3"


def _must(result, what: str):
    assert result.returncode == 0, f"{what}: {result.stdout}\n{result.stderr}"
    return result


def _virtual_authenticator(page: Page) -> tuple[object, str]:
    """A platform authenticator that verifies the person, attached to this page (DevTools)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    return cdp, added["authenticatorId"]


def _site_session(site, sub: str | None = None) -> dict:
    sessions = [s for s in site.sessions() if sub is None or s["sub"] == sub]
    assert sessions, site.sessions()
    return sessions[-1]


def _log_in_at_site(page: Page, site, issuer: str) -> None:
    page.goto(site.url + "/")
    expect(status(page)).to_have_attribute("data-state", "logged-out")
    page.locator("#login").click()
    page.wait_for_url(re.compile("^" + re.escape(issuer) + "/interaction/.*/login"))


def test_add_a_passkey_then_use_it_as_second_step_and_alone(deployment, chromium):
    issuer, site = deployment.issuer, deployment.sites["a"]
    _must(deployment.tessera("users", "create", "--phone", PERSON_PHONE, "--password", PERSON_PASSWORD,
                             "--name", "Kim Passkey", "--json"), "users create")
    context = chromium.new_context()
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        cdp, authenticator = _virtual_authenticator(page)

        def presence(enabled: bool) -> None:
            cdp.send("WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": authenticator, "enabled": enabled})

        # 1. Add a passkey on /account/security (a fresh password login is recent enough).
        page.goto(issuer + "/account/login")
        hub_login(page, issuer, login=PERSON_PHONE, password=PERSON_PASSWORD)
        page.wait_for_url(issuer + "/account/")
        page.goto(issuer + "/account/security")
        page.get_by_role("link", name="Add a passkey or security key").click()
        page.wait_for_url(issuer + "/account/security/passkeys/new")
        page.locator("#name").fill("Virtual laptop")
        page.locator("#create-passkey").click()
        expect(page.locator("#recovery-codes li")).to_have_count(10)  # a first second factor
        expect(page.locator("#passkeys tr.passkey input[name=name]")).to_have_value("Virtual laptop")
        credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
        assert len(credentials) == 1 and credentials[0]["isResidentCredential"], credentials
        assert credentials[0]["rpId"] == "localhost"

        # 2. Site A: the password, then the passkey as the second step. The login page's pending
        # conditional request would answer at once (the virtual authenticator simulates a touch):
        # no touches until the second step.
        presence(False)
        context.clear_cookies()
        _log_in_at_site(page, site, issuer)
        hub_login(page, issuer, login=PERSON_PHONE, password=PERSON_PASSWORD)
        page.wait_for_url(re.compile(r".*/interaction/.*/mfa"))
        presence(True)
        page.locator("#use-passkey").click()
        page.wait_for_url(site.url + "/**")
        expect(status(page)).to_have_attribute("data-state", "logged-in")
        second_step = _site_session(site)
        assert second_step["acr"] == LOA3 and set(second_step["amr"]) == {"mfa", "pwd", "swk", "user"}, second_step

        # 3. Site A again, the passkey alone, through the login field's autofill (conditional
        # mediation): the browser offers the passkey, and takes it the moment the person picks it
        # — here at once, the virtual authenticator's simulated touch. No password, no second step.
        context.clear_cookies()
        page.goto(site.url + "/")
        page.locator("#login").click()
        page.wait_for_url(site.url + "/**")
        expect(status(page)).to_have_attribute("data-state", "logged-in")
        autofill = _site_session(site, second_step["sub"])
        assert autofill["sid"] != second_step["sid"]
        assert autofill["acr"] == LOA3 and set(autofill["amr"]) == {"mfa", "swk", "user"}, autofill

        # 4. And by the "Sign in with a passkey" button, in a browser without conditional mediation.
        page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);")
        context.clear_cookies()
        _log_in_at_site(page, site, issuer)
        expect(page.locator("#login")).to_have_attribute("autocomplete", "username webauthn")
        page.locator("#passkey-login").click()
        page.wait_for_url(site.url + "/**")
        expect(status(page)).to_have_attribute("data-state", "logged-in")
        button = _site_session(site, second_step["sub"])
        assert button["sid"] not in (autofill["sid"], second_step["sid"])
        assert button["acr"] == LOA3 and set(button["amr"]) == {"mfa", "swk", "user"}, button
        used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
        assert used[0]["signCount"] >= 3, used

        # The person's history has the passkey added and the passwordless login.
        history = _must(deployment.tessera("audit", "search", "--account", PERSON_PHONE, "--json"),
                        "audit search").stdout
        assert "mfa.passkey_added" in history and '"webauthn"' in history, history
    finally:
        context.close()
