"""Passkeys and security keys through the pages like a browser, with a software authenticator
(tests/mfa/authenticator.py) answering the ceremonies: registering on /account/security, a passkey
as the second step of a login (loa:2, loa:3 when it verified the person), a passwordless login
(loa:3), the account center's own login, a step-up, a site whose minimum is loa:3 (a passkey
only), and what is refused: a replayed challenge, another origin or RP ID, a signature counter
going backwards, a removed passkey, an answer that is not one."""

from __future__ import annotations

import json

import cbor2

from app.audit import AuditEvent
from app.extensions import db
from app.mfa.models import RecoveryCode, WebAuthnCredential
from tests.conftest import ISSUER
from tests.mfa.authenticator import SoftwareAuthenticator, b64url, from_b64url
from tests.mfa.test_second_factor import _claims, _code, _hub_login, _rp, enrol
from tests.rp import Browser, RelyingParty, authorize, csrf_token

LOA1, LOA2, LOA3 = "urn:tessera:loa:1", "urn:tessera:loa:2", "urn:tessera:loa:3"
ESSENTIAL_LOA3 = json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA3]}}})


def ceremony_options(browser: Browser, page, url: str):
    """POST a ceremony's options endpoint like passkeys.js: the page's CSRF token in a header."""
    return browser.http.post(url, headers={"X-CSRFToken": csrf_token(page.get_data(as_text=True)),
                                           "Accept": "application/json"})


def options(browser: Browser, page, url: str) -> dict:
    response = ceremony_options(browser, page, url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def register(app, account, authenticator: SoftwareAuthenticator, name: str = "Laptop", browser: Browser | None = None):
    """Add a passkey on /account/security (logging in first); the browser and the page after."""
    browser = browser or _hub_login(app, account)
    page = browser.go(f"{ISSUER}/account/security/passkeys/new")
    assert page.status_code == 200 and 'data-passkey="create"' in page.get_data(as_text=True)
    answer = authenticator.create(options(browser, page, f"{ISSUER}/account/security/passkeys/options"))
    return browser, browser.submit(page, {"name": name, "credential": json.dumps(answer)})


def _uid(page) -> str:
    return page.request.path.split("/")[2]


def _second_step_with(browser, step, authenticator, **answer):
    opts = options(browser, step, f"{ISSUER}/interaction/{_uid(step)}/mfa/passkey/options")
    return browser.submit(step, {"credential": json.dumps(authenticator.get(opts, **answer))})


def _passwordless(browser, page, authenticator, **answer):
    uid = _uid(page)
    opts = options(browser, page, f"{ISSUER}/interaction/{uid}/passkey/options")
    assert opts["allowCredentials"] == [] and opts["userVerification"] == "required"
    return browser.submit(page, {"credential": json.dumps(authenticator.get(opts, **answer))},
                          url=f"{ISSUER}/interaction/{uid}/passkey")


def _events(app, account_id: int) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.id)))


def _credential(app, account_id: int) -> WebAuthnCredential:
    with app.app_context():
        return db.session.scalar(db.select(WebAuthnCredential).filter_by(account_id=account_id))


def test_registering_a_passkey_shows_recovery_codes_and_audits_it(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    browser, done = register(app, person, laptop, name="  My   laptop\x07 ")
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and 'id="recovery-codes"' in html and "My laptop" in html
    row = _credential(app, person.id)
    assert (row.name, row.attachment, row.discoverable, row.user_verified, row.sign_count) == \
        ("My laptop", "platform", True, True, 0)
    assert row.credential_id == laptop.credential_id and row.transports == ["internal"]
    # a second authenticator: no new recovery codes, the first one excluded from its options
    key = SoftwareAuthenticator(attachment="cross-platform", verifies=False)
    page = browser.go(f"{ISSUER}/account/security/passkeys/new")
    opts = options(browser, page, f"{ISSUER}/account/security/passkeys/options")
    assert [d["id"] for d in opts["excludeCredentials"]] == [b64url(laptop.credential_id)]
    assert opts["authenticatorSelection"] == {"residentKey": "preferred", "requireResidentKey": False,
                                              "userVerification": "preferred"}
    assert opts["attestation"] == "none" and opts["rp"] == {"id": "localhost", "name": "Tessera"}
    done = browser.submit(page, {"name": "", "credential": json.dumps(key.create(opts))})
    assert done.request.path == "/account/security" and "Security key" in done.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(RecoveryCode.id)).filter_by(account_id=person.id)) == 10
    kinds = [e.kind for e in _events(app, person.id)]
    assert kinds.count("mfa.passkey_added") == 2
    assert "mfa.passkey_added" in browser.go(f"{ISSUER}/account/").get_data(as_text=True)  # the person's history


def test_the_same_authenticator_is_not_registered_twice(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    browser, _ = register(app, person, laptop)
    page = browser.go(f"{ISSUER}/account/security/passkeys/new")
    opts = options(browser, page, f"{ISSUER}/account/security/passkeys/options")
    opts["excludeCredentials"] = []  # a browser that ignored the exclusion list
    again = browser.submit(page, {"credential": json.dumps(laptop.create(opts))})
    assert again.status_code == 400 and "registered already" in again.get_data(as_text=True)


def test_a_passkey_is_the_second_step_and_reaches_loa3_when_it_verified_the_person(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    register(app, person, laptop)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    html = step.get_data(as_text=True)
    assert step.request.path.endswith("/mfa") and "Use a passkey or security key" in html
    assert 'name="code"' not in html  # no authenticator app: nothing to set up either
    claims = _claims(rp, request, _second_step_with(browser, step, laptop))
    assert claims["acr"] == LOA3 and claims["amr"] == ["mfa", "pwd", "swk", "user"]
    assert _credential(app, person.id).sign_count == 1


def test_a_security_key_without_user_verification_gives_loa2(app, factories):
    person = factories.account()
    key = SoftwareAuthenticator(attachment="cross-platform", verifies=False)
    register(app, person, key, name="YubiKey")
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    claims = _claims(rp, request, _second_step_with(browser, step, key))
    assert claims["acr"] == LOA2 and claims["amr"] == ["hwk", "mfa", "pwd"]


def test_a_synced_passkey_is_swk_even_on_a_phone_reached_as_cross_platform(app, factories):
    person = factories.account()
    phone = SoftwareAuthenticator(attachment="cross-platform", synced=True)
    register(app, person, phone)
    assert _credential(app, person.id).backup_eligible is True
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    assert "swk" in _claims(rp, request, _second_step_with(browser, step, phone))["amr"]


def test_passwordless_login_reaches_loa3_without_a_second_step(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    register(app, person, laptop)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request = rp.authorization_request()
    page = browser.go(request.url)
    html = page.get_data(as_text=True)
    assert 'autocomplete="username webauthn"' in html and "Sign in with a passkey" in html
    done = _passwordless(browser, page, laptop)
    claims = _claims(rp, request, done)
    assert claims["acr"] == LOA3 and claims["amr"] == ["mfa", "swk", "user"]
    success = [e for e in _events(app, person.id) if e.kind == "login.success"][-1]
    assert success.details["method"] == "webauthn"


def test_passwordless_login_needs_user_verification(app, factories):
    person = factories.account()
    key = SoftwareAuthenticator(attachment="cross-platform", verifies=False)
    register(app, person, key)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    page = browser.go(rp.authorization_request().url)
    refused = _passwordless(browser, page, key)
    assert refused.status_code == 401 and "did not work" in refused.get_data(as_text=True)
    assert [e.details["method"] for e in _events(app, person.id) if e.kind == "login.failure"] == ["webauthn"]


def test_a_challenge_is_never_accepted_twice(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator(counter=None)  # keeps no counter: only the challenge stops a replay
    register(app, person, laptop)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request = rp.authorization_request()
    page = browser.go(request.url)
    uid = _uid(page)
    opts = options(browser, page, f"{ISSUER}/interaction/{uid}/passkey/options")
    answer = json.dumps(laptop.get(opts))
    # the browser's state, with the challenge pending in it
    earlier = browser.http.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    first = browser.submit(page, {"credential": answer}, url=f"{ISSUER}/interaction/{uid}/passkey")
    assert first.status_code == 302 and "code=" in first.location
    # the same answer again with the earlier cookie put back: the server forgot the challenge
    browser.http.set_cookie(app.config["SESSION_COOKIE_NAME"], earlier, domain="localhost")
    page = browser.go(rp.authorization_request(prompt="login").url)
    again = browser.submit(page, {"credential": answer}, url=f"{ISSUER}/interaction/{_uid(page)}/passkey")
    assert again.status_code == 401 and "expired or was used already" in again.get_data(as_text=True)
    # and the browser's session no longer holds it either
    page = browser.go(rp.authorization_request(prompt="login").url)
    second = browser.submit(page, {"credential": answer}, url=f"{ISSUER}/interaction/{_uid(page)}/passkey")
    assert second.status_code == 401 and "expired or was used already" in second.get_data(as_text=True)


def test_an_answer_for_another_origin_or_rp_id_is_refused(app, factories):
    person = factories.account()
    phished = SoftwareAuthenticator(origin="https://tessera-login.example")
    browser = _hub_login(app, person)
    _, refused = register(app, person, phished, browser=browser)
    assert refused.status_code == 400 and "could not be registered" in refused.get_data(as_text=True)
    laptop = SoftwareAuthenticator()
    register(app, person, laptop, browser=browser)
    site = factories.client(trusted=True)
    for wrong in ({"origin": "https://tessera-login.example"}, {"rp_id": "tessera-login.example"},
                  {"origin": "http://localhost:8080"}):
        rp_browser, rp = _rp(app, site)
        _, step = authorize(rp_browser, rp, person)
        refused = _second_step_with(rp_browser, step, laptop, **wrong)
        assert refused.status_code == 401 and "did not work" in refused.get_data(as_text=True), wrong
    assert sum(e.kind == "mfa.failure" for e in _events(app, person.id)) == 3


def test_a_signature_counter_going_backwards_is_refused(app, factories):
    person = factories.account()
    key = SoftwareAuthenticator(attachment="cross-platform", counter=10)
    register(app, person, key)
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person)
    _claims(rp, request, _second_step_with(browser, step, key))
    assert _credential(app, person.id).sign_count == 11
    key.counter = 5  # a copy of the key, behind the original
    browser, rp = _rp(app, site)
    _, step = authorize(browser, rp, person)
    refused = _second_step_with(browser, step, key)
    assert refused.status_code == 401 and "went backwards" in refused.get_data(as_text=True)
    assert "mfa.passkey_counter_regressed" in [e.kind for e in _events(app, person.id)]
    assert _credential(app, person.id).sign_count == 11


def test_a_site_whose_minimum_is_loa3_takes_a_passkey_only(app, factories):
    person = factories.account()
    _, secret, codes = enrol(app, person)  # an authenticator app only
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, step = authorize(browser, rp, person, claims=ESSENTIAL_LOA3)
    html = step.get_data(as_text=True)
    assert step.request.path.endswith("/mfa") and 'id="passkey-needed"' in html and 'name="code"' not in html
    # the page offers no code form: a code posted all the same is refused
    token_page = browser.go(f"{ISSUER}/account/login")
    refused = browser.submit(token_page, {"code": _code(secret), "verify": "Verify"}, url=step.request.url)
    assert refused.status_code == 401 and "requires a passkey" in refused.get_data(as_text=True)
    refused = browser.submit(token_page, {"recovery_code": codes[0], "use_recovery": "Use"}, url=step.request.url)
    assert refused.status_code == 401
    # with a passkey too: it is all the page offers, and the authenticator must verify the person
    laptop = SoftwareAuthenticator()
    register(app, person, laptop, browser=_hub_login_with_code(app, person, secret))
    for strict_site in (site, factories.client(trusted=True, default_acr_values=[LOA3])):
        browser, rp = _rp(app, strict_site)
        request, step = authorize(browser, rp, person, **({"claims": ESSENTIAL_LOA3} if strict_site is site else {}))
        html = step.get_data(as_text=True)
        assert "Use a passkey or security key" in html and 'name="code"' not in html
        opts = options(browser, step, f"{ISSUER}/interaction/{_uid(step)}/mfa/passkey/options")
        assert opts["userVerification"] == "required"
        claims = _claims(rp, request, browser.submit(step, {"credential": json.dumps(laptop.get(opts))}))
        assert claims["acr"] == LOA3


def _hub_login_with_code(app, account, secret) -> Browser:
    browser = Browser(app.test_client(), ISSUER)
    page = browser.login(browser.go(f"{ISSUER}/account/login"), account.phone, account.password)
    assert page.request.path == "/account/login/mfa"
    done = browser.submit(page, {"code": _code(secret, 1), "verify": "Verify"})
    assert done.request.path == "/account/", done.get_data(as_text=True)[:300]
    return browser


def test_step_up_with_a_passkey(app, factories):
    person = factories.account()
    site = factories.client(trusted=True)
    browser, rp = _rp(app, site)
    request, response = authorize(browser, rp, person)
    assert _claims(rp, request, response)["acr"] == LOA1
    # the person adds a passkey in this browser (their session stays a password one)
    laptop = SoftwareAuthenticator()
    register(app, person, laptop, browser=browser)
    request = rp.authorization_request(claims=ESSENTIAL_LOA3)
    step = browser.go(request.url)
    assert step.request.path.endswith("/mfa") and 'name="password"' not in step.get_data(as_text=True)
    claims = _claims(rp, request, _second_step_with(browser, step, laptop))
    assert claims["acr"] == LOA3 and claims["amr"] == ["mfa", "pwd", "swk", "user"]


def test_the_account_centers_login_with_a_passkey(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    register(app, person, laptop)
    # passwordless
    browser = Browser(app.test_client(), ISSUER)
    page = browser.go(f"{ISSUER}/account/login")
    assert "Sign in with a passkey" in page.get_data(as_text=True)
    opts = options(browser, page, f"{ISSUER}/account/login/passkey/options")
    done = browser.submit(page, {"credential": json.dumps(laptop.get(opts))}, url=f"{ISSUER}/account/login/passkey")
    assert done.request.path == "/account/"
    assert "swk, user" in browser.go(f"{ISSUER}/account/security").get_data(as_text=True)
    # a password, then the passkey as the second step
    browser = Browser(app.test_client(), ISSUER)
    step = browser.login(browser.go(f"{ISSUER}/account/login"), person.phone, person.password)
    assert step.request.path == "/account/login/mfa"
    opts = options(browser, step, f"{ISSUER}/account/login/mfa/passkey/options")
    done = browser.submit(step, {"credential": json.dumps(laptop.get(opts))})
    assert done.request.path == "/account/"


def test_renaming_and_removing_a_passkey(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    browser, page = register(app, person, laptop)
    passkey_id = _credential(app, person.id).id
    page = browser.submit(page, {"name": "Work laptop"}, url=f"{ISSUER}/account/security/passkeys/{passkey_id}/rename")
    assert 'value="Work laptop"' in page.get_data(as_text=True)
    # another person cannot touch it
    other_browser = _hub_login(app, factories.account())
    other = other_browser.submit(other_browser.go(f"{ISSUER}/account/"), {},
                                 url=f"{ISSUER}/account/security/passkeys/{passkey_id}/remove")
    assert "no such passkey" in other.get_data(as_text=True) and _credential(app, person.id) is not None
    page = browser.submit(page, {}, url=f"{ISSUER}/account/security/passkeys/{passkey_id}/remove")
    assert "No passkey yet" in page.get_data(as_text=True) and _credential(app, person.id) is None
    kinds = [e.kind for e in _events(app, person.id)]
    assert "mfa.passkey_renamed" in kinds and "mfa.passkey_removed" in kinds
    with app.app_context():  # the recovery codes went with the last second factor
        assert db.session.scalar(db.select(db.func.count(RecoveryCode.id)).filter_by(account_id=person.id)) == 0
    # no second step any more, and the removed passkey no longer logs in
    site = factories.client(trusted=True)
    rp_browser, rp = _rp(app, site)
    request, response = authorize(rp_browser, rp, person)
    assert response.status_code == 302
    rp_browser, rp = _rp(app, site)
    page = rp_browser.go(rp.authorization_request().url)
    refused = _passwordless(rp_browser, page, laptop)
    assert refused.status_code == 401


def test_adding_a_passkey_needs_a_recent_login(app, factories):
    person = factories.account()
    browser = _hub_login(app, person)
    page = browser.go(f"{ISSUER}/account/")
    app.config["TESSERA_REAUTH_MAX_AGE"] = -1
    try:
        assert browser.http.get("/account/security/passkeys/new").location.startswith("/account/confirm")
        stale = ceremony_options(browser, page, f"{ISSUER}/account/security/passkeys/options")
        assert stale.status_code == 401 and stale.mimetype == "application/problem+json"
        assert stale.get_json()["confirm"].startswith("/account/confirm")
    finally:
        app.config["TESSERA_REAUTH_MAX_AGE"] = 600


def test_bad_answers_are_4xx(app, factories):
    person = factories.account()
    laptop = SoftwareAuthenticator()
    browser, _ = register(app, person, laptop)
    page = browser.go(f"{ISSUER}/account/security/passkeys/new")
    for junk in ("", "null", "[1]", "{", json.dumps({"id": "x", "rawId": "!!", "response": {}, "type": "public-key"}),
                 "x" * 40_000, "tpm"):
        opts = options(browser, page, f"{ISSUER}/account/security/passkeys/options")
        if junk == "tpm":  # a well-formed answer with an attestation statement the parsers choke on
            answer = SoftwareAuthenticator().create(opts)
            statement = cbor2.loads(from_b64url(answer["response"]["attestationObject"]))
            statement.update(fmt="tpm", attStmt={"ver": "2.0", "alg": -7, "sig": b"x", "x5c": [b"x"],
                                                 "certInfo": b"x", "pubArea": b"x"})
            answer["response"]["attestationObject"] = b64url(cbor2.dumps(statement))
            junk = json.dumps(answer)
        assert browser.submit(page, {"credential": junk}).status_code == 400
    site = factories.client(trusted=True)
    rp_browser, rp = _rp(app, site)
    _, step = authorize(rp_browser, rp, person)
    nonsense = {"clientDataJSON": "AA", "authenticatorData": "AA", "signature": "AA"}
    for junk in ("{}", json.dumps({"id": "AA", "rawId": "AA", "type": "public-key", "response": nonsense})):
        options(rp_browser, step, f"{ISSUER}/interaction/{_uid(step)}/mfa/passkey/options")
        assert rp_browser.submit(step, {"credential": junk}).status_code in (400, 401)
    # options for an interaction of another browser, or with no login waiting
    stranger = Browser(app.test_client(), ISSUER)
    own_page = stranger.go(f"{ISSUER}/account/login")
    for url in (f"{ISSUER}/interaction/{_uid(step)}/mfa/passkey/options",
                f"{ISSUER}/interaction/{_uid(step)}/passkey/options", f"{ISSUER}/account/login/mfa/passkey/options"):
        refused = ceremony_options(stranger, own_page, url)
        assert refused.status_code == 400 and refused.mimetype == "application/problem+json", url
