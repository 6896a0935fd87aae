"""SMS as the second step after a password, through the pages: turned on at /account/security,
a code texted to the verified phone at login (acr loa:2, amr pwd+sms), a wrong code refused, and
never after a login that was itself an SMS code."""

from __future__ import annotations

import re

from tests.conftest import ISSUER
from tests.mfa.test_second_factor import LOA1, LOA2, _claims, _hub_login, _rp
from tests.rp import authorize


def turn_on(app, person):
    browser = _hub_login(app, person)
    page = browser.go(f"{ISSUER}/account/security")
    assert "Use a code texted to" in page.get_data(as_text=True)
    done = browser.submit(page, {"on": "1"}, url=f"{ISSUER}/account/security/sms")
    html = done.get_data(as_text=True)
    assert len(re.findall(r"<li><code>", html)) == 10  # the first second factor comes with recovery codes
    assert "Stop codes by text message" in html
    return browser


def test_a_password_login_then_a_texted_code(app, factories, outbox):
    person = factories.account()
    turn_on(app, person)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    assert step.request.path.endswith("/mfa") and "Text me a code" in step.get_data(as_text=True)
    sent = browser.submit(step, {"send_sms": "Text me a code"})
    assert "We texted a code to" in sent.get_data(as_text=True) and person.phone[-4:] in sent.get_data(as_text=True)
    texts = [t for t in outbox.texts(person.phone) if t["purpose"] == "mfa"]
    assert len(texts) == 1
    wrong = browser.submit(sent, {"sms_code": "000000", "verify_sms": "Verify"})
    assert wrong.status_code == 401
    done = browser.submit(wrong, {"sms_code": texts[0]["code"], "verify_sms": "Verify"})
    claims = _claims(rp, request, done)
    assert claims["acr"] == LOA2 and claims["amr"] == ["mfa", "pwd", "sms"]


def test_never_after_an_sms_code_login_and_off_again(app, factories, outbox):
    person = factories.account()
    browser = turn_on(app, person)
    site = factories.client(trusted=True)
    # A phone-code login: the second step would text the same phone again, so there is none.
    otp_browser, rp = _rp(app, site)
    request = rp.authorization_request()
    page = otp_browser.go(request.url)
    page = otp_browser.go(f"{ISSUER}/interaction/{page.request.path.split('/')[2]}/otp")
    page = otp_browser.submit(page, {"phone": person.phone})
    response = otp_browser.submit(page, {"code": outbox.code(person.phone)})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    claims = _claims(rp, request, response)
    assert claims["amr"] == ["sms"] and claims["acr"] == LOA1

    page = browser.go(f"{ISSUER}/account/security")
    browser.submit(page, {"on": "0"}, url=f"{ISSUER}/account/security/sms")
    assert "Use a code texted to" in browser.go(f"{ISSUER}/account/security").get_data(as_text=True)
    pwd_browser, rp = _rp(app, site)
    _, response = authorize(pwd_browser, rp, person)
    assert response.status_code == 302  # the password alone again


def test_the_person_is_told_of_every_change_to_their_second_factors(app, factories, outbox):
    person = factories.account(email="told@example.com")
    browser = turn_on(app, person)
    notices = [t["message"] for t in outbox.texts(person.phone) if t["purpose"] == "mfa_notice"]
    assert len(notices) == 1 and "code by text message" in notices[0]
    assert any("Your sign-in settings changed" == m["subject"] for m in outbox.mails("told@example.com"))
    page = browser.go(f"{ISSUER}/account/security")
    browser.submit(page, {"on": "0"}, url=f"{ISSUER}/account/security/sms")
    assert len([t for t in outbox.texts(person.phone) if t["purpose"] == "mfa_notice"]) == 2
