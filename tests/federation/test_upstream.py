"""Login through upstream identity providers, for real: a second Tessera (OpenID Connect, by
discovery) and a WeChat-style OAuth 2.0 open platform, both on real sockets; the hub is driven
through HTTP (Flask's test client) and the upstream Tessera's login page by a
``requests.Session`` browser."""

from __future__ import annotations

import html
import json
import re

import pytest
import requests

from app.accounts.models import Account, AuditEvent, Identity
from app.errors import InvalidInput
from app.extensions import db
from app.federation.models import PendingUpstreamLogin, UpstreamProvider
from app.federation.providers import create_provider
from app.oidc.models import SSOSession
from tests.conftest import ISSUER
from tests.federation.conftest import HUB
from tests.rp import Browser, RelyingParty, code_from, csrf_token
from tests.test_live_server import _follow_inside_hub

START_RE = re.compile(r'href="(/upstream/([a-z0-9-]+)/start\?interaction=[^"]+)"')
PENDING_RE = re.compile(r"/upstream/pending/([A-Za-z0-9_\-]+)$")


# --- helpers -------------------------------------------------------------------------------------

@pytest.fixture
def rp(factories, http):
    """A trusted relying party of the hub (no consent page)."""
    return RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))


def oidc_provider(app, op, slug="tessera-up", **kwargs):
    with app.app_context():
        return create_provider(slug=slug, name=f"Upstream {slug}", discovery_url=op.issuer, client_id=op.client_id,
                               client_secret=op.client_secret, **kwargs).slug


def platform_provider(app, platform, slug, client_id, **kwargs):
    """A WeChat-style app of the open platform, configured like `tessera upstreams create` does."""
    platform.clients[client_id] = f"secret-of-{client_id}"
    with app.app_context():
        return create_provider(
            slug=slug, name=f"WeChat {slug}", authorization_endpoint=platform.url + "/authorize",
            token_endpoint=platform.url + "/token", userinfo_endpoint=platform.url + "/userinfo",
            client_id=client_id, client_secret=platform.clients[client_id], scope="snsapi_login",
            claim_mapping={"openid": "sub", "unionid": "unionid", "nickname": "nickname"}, platform="wechat",
            **kwargs,
        ).slug


def start_at_hub(browser: Browser, rp: RelyingParty, slug: str):
    """Open the hub's login page for an authorization request and press the upstream's button.
    Returns (auth request, the upstream URL the hub redirects to)."""
    request = rp.authorization_request(scope="openid")
    page = browser.go(request.url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="password"' in text
    buttons = {m.group(2): html.unescape(m.group(1)) for m in START_RE.finditer(text)}
    assert slug in buttons, f"no login button for {slug}: {sorted(buttons)}"
    response = browser.http.get(buttons[slug])
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return request, response.location


def through_upstream_op(op, upstream_browser: requests.Session, url: str, user=None) -> str:
    """The upstream Tessera's side: log in on its real login page when it asks; returns the
    URL it sends the browser back to (the hub's callback)."""
    response = _follow_inside_hub(upstream_browser, upstream_browser.get(url, allow_redirects=False, timeout=10),
                                  op.issuer)
    if response.status_code == 200:
        assert user is not None and 'name="password"' in response.text, response.text[:300]
        form = {"csrf_token": csrf_token(response.text), "login": user.phone, "password": user.password,
                "submit": "Log in"}
        response = _follow_inside_hub(
            upstream_browser, upstream_browser.post(response.url, data=form, allow_redirects=False, timeout=30),
            op.issuer)
    assert response.status_code == 302, (response.status_code, response.text[:300])
    location = response.headers["Location"]
    assert location.startswith(HUB + "/upstream/"), location
    return location


def through_platform(url: str) -> str:
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    return response.headers["Location"]


def pending_uid(page) -> str:
    match = PENDING_RE.search(page.request.path)
    assert page.status_code == 200 and match, (page.status_code, page.request.path)
    return match.group(1)


def create_account_on(browser: Browser, page):
    return browser.submit(page, {"submit": "Create a new account"}, url=f"/upstream/pending/{pending_uid(page)}/create")


def link_on(browser: Browser, page, login: str, password: str):
    return browser.submit(page, {"login": login, "password": password, "submit": "Link and log in"},
                          url=f"/upstream/pending/{pending_uid(page)}/link")


def sub_at_rp(rp: RelyingParty, request, response) -> dict:
    token = rp.exchange(code_from(response, request), request)
    assert token.status_code == 200, token.get_data(as_text=True)
    return rp.validate_id_token(token.get_json()["id_token"], nonce=request.nonce)


def upstream_identities(app) -> list[Identity]:
    with app.app_context():
        rows = list(db.session.scalars(db.select(Identity).filter_by(kind="upstream").order_by(Identity.id)))
        db.session.expunge_all()
        return rows


def audit_kinds(app, account_id: int) -> list[tuple[str, dict]]:
    with app.app_context():
        return [(e.kind, e.details) for e in db.session.scalars(
            db.select(AuditEvent).filter_by(account_id=account_id).order_by(AuditEvent.id))]


# --- OpenID Connect upstream (a second Tessera) ---------------------------------------------------

def test_first_login_creates_an_account_and_the_next_login_lands_on_it(app, http, rp, upstream_op):
    runner = app.test_cli_runner()
    result = runner.invoke(args=[
        "upstreams", "create", "--slug", "tessera-up", "--name", "Upstream Group", "--discovery-url",
        upstream_op.issuer + "/.well-known/openid-configuration", "--client-id", upstream_op.client_id,
        "--client-secret", upstream_op.client_secret, "--json",
    ])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["kind"] == "oidc" and created["issuer"] == upstream_op.issuer
    assert created["jwks_uri"].startswith(upstream_op.issuer + "/")
    assert created["redirect_uri"] == f"{HUB}/upstream/tessera-up/callback"
    assert upstream_op.client_secret not in result.output
    with app.app_context():  # the secret is stored encrypted, not in clear
        stored = db.session.scalar(db.select(UpstreamProvider.client_secret_encrypted).filter_by(slug="tessera-up"))
        assert stored and upstream_op.client_secret not in stored

    listed = runner.invoke(args=["upstreams", "list", "--json"])
    assert listed.exit_code == 0 and [p["slug"] for p in json.loads(listed.output)] == ["tessera-up"]
    assert "secret" not in listed.output.replace("has_client_secret", "")

    upstream_browser = requests.Session()
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    assert upstream_url.startswith(upstream_op.issuer + "/authorize?")
    sent = dict(re.findall(r"[?&]([^=&]+)=([^&]*)", upstream_url))
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] and sent["state"]
    assert sent["client_id"] == upstream_op.client_id

    callback = through_upstream_op(upstream_op, upstream_browser, upstream_url, upstream_op.alice)
    page = browser.go(callback)
    text = page.get_data(as_text=True)
    assert "First login with Upstream tessera-up" not in text  # the operator's name is used
    assert "First login with Upstream Group" in text and "Alice Upstream" in text
    assert page.status_code == 200  # a page of the hub: no code for the client yet

    response = create_account_on(browser, page)
    first = sub_at_rp(rp, request, response)
    assert first["amr"] == ["fed"]

    [identity] = upstream_identities(app)
    assert identity.namespace == "tessera-up" and identity.display == "Alice Upstream" and identity.unionid is None
    with app.app_context():
        account = db.session.get(Account, identity.account_id)
        assert account.name == "Alice Upstream"
        # verified upstream and not taken here: the email and the phone become identities
        assert {(i.kind, i.value, i.verified) for i in account.identities} == {
            ("upstream", identity.value, True), ("email", "alice@example.com", True), ("phone", "+14155550201", True)}
        assert db.session.scalar(db.select(db.func.count(PendingUpstreamLogin.id))) == 0
    kinds = [k for k, _ in audit_kinds(app, identity.account_id)]
    assert kinds == ["account.created", "login.success"]
    assert audit_kinds(app, identity.account_id)[1][1]["method"] == "fed"

    # A new browser at the hub, the same person at the upstream (already logged in there):
    # no prompt anywhere, the same account.
    other = Browser(app.test_client(), ISSUER)
    request, upstream_url = start_at_hub(other, rp, "tessera-up")
    response = other.go(through_upstream_op(upstream_op, upstream_browser, upstream_url))
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri)
    assert sub_at_rp(rp, request, response)["sub"] == first["sub"]
    assert len(upstream_identities(app)) == 1
    with app.app_context():
        session = db.session.scalars(db.select(SSOSession).order_by(SSOSession.id.desc())).first()
        assert session.account_id == identity.account_id and session.amr == ["fed"]


def test_link_to_an_existing_account_needs_its_password(app, http, rp, factories, upstream_op):
    oidc_provider(app, upstream_op)
    mine = factories.account(email="alice.here@example.com", name="Alice Here")
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))

    refused = link_on(browser, page, mine.phone, "not the password")
    assert refused.status_code == 401 and "wrong identifier or password" in refused.get_data(as_text=True)
    assert upstream_identities(app) == []
    assert ("login.failure", {"method": "pwd", "reason": "bad credentials"}) in audit_kinds(app, mine.id)

    page = browser.go(page.request.url)  # the pending login is still there
    response = link_on(browser, page, mine.phone, mine.password)
    claims = sub_at_rp(rp, request, response)
    [identity] = upstream_identities(app)
    assert identity.account_id == mine.id and identity.display == "Alice Upstream"
    kinds = [k for k, _ in audit_kinds(app, mine.id)]
    assert "identity.linked" in kinds and kinds[-1] == "login.success"
    with app.app_context():
        session = db.session.scalars(db.select(SSOSession).order_by(SSOSession.id.desc())).first()
        assert session.account_id == mine.id and session.amr == ["fed", "pwd"]
        # linking adds only the upstream identity: the upstream's email is not added to an existing account
        assert db.session.scalar(db.select(Identity).filter_by(value="alice@example.com")) is None

    # the next login through the upstream logs in the linked account directly
    other = Browser(app.test_client(), ISSUER)
    request2, upstream_url = start_at_hub(other, rp, "tessera-up")
    response = other.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    assert sub_at_rp(rp, request2, response)["sub"] == claims["sub"]


def test_link_proofs_draw_on_the_shared_credential_budget(app, http, rp, factories, upstream_op, budgets):
    budgets(TESSERA_CREDENTIAL_BUDGET_TARGET="3 per 15 minutes")
    oidc_provider(app, upstream_op)
    mine = factories.account()
    # Two wrong passwords for the account at the hub's own login page, from other addresses ...
    for n in range(2):
        elsewhere = Browser(app.test_client(), ISSUER)
        elsewhere.http.environ_base["REMOTE_ADDR"] = f"203.0.113.{90 + n}"
        assert elsewhere.login(elsewhere.go(f"{ISSUER}/account/login"), mine.phone, "guess").status_code == 401
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    # ... and one at the link page spend the account's budget: the right password is refused next.
    assert link_on(browser, page, mine.phone, "guess").status_code == 401
    refused = link_on(browser, browser.go(page.request.url), mine.phone, mine.password)
    assert refused.status_code == 429 and "too many attempts" in refused.get_data(as_text=True)
    assert upstream_identities(app) == []


def test_an_unverified_upstream_email_never_links_or_suggests(app, http, rp, factories, upstream_op):
    oidc_provider(app, upstream_op, slug="tessera-match", matching_mode="verified_email")
    bob_here = factories.account(email=upstream_op.bob.email)        # verified here, unverified upstream
    alice_here = factories.account(email=upstream_op.alice.email)    # verified on both sides

    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-match")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.bob))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="suggestion"' not in text
    assert upstream_op.bob.email not in text  # not even pre-filled
    assert upstream_identities(app) == []
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(SSOSession.id))) == 0
        assert db.session.scalar(db.select(db.func.count(AuditEvent.id)).filter_by(account_id=bob_here.id)) == 0

    # Verified on both sides: the account is only suggested, and still needs its own proof.
    browser = Browser(app.test_client(), ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-match")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="suggestion"' in text
    assert f'value="{upstream_op.alice.email}"' in text
    assert upstream_identities(app) == []
    refused = link_on(browser, page, upstream_op.alice.email, "")
    assert refused.status_code == 400 and upstream_identities(app) == []
    response = link_on(browser, browser.go(page.request.url), upstream_op.alice.email, alice_here.password)
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri)
    assert [i.account_id for i in upstream_identities(app)] == [alice_here.id]


def test_matching_never_suggests_nothing(app, http, rp, factories, upstream_op):
    oidc_provider(app, upstream_op)  # matching mode "never" by default
    factories.account(email=upstream_op.alice.email)
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    assert 'id="suggestion"' not in page.get_data(as_text=True)


def test_create_skips_an_email_that_is_already_taken(app, http, rp, factories, upstream_op):
    oidc_provider(app, upstream_op)
    owner = factories.account(email=upstream_op.alice.email)
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    sub_at_rp(rp, request, create_account_on(browser, page))
    [identity] = upstream_identities(app)
    assert identity.account_id != owner.id
    with app.app_context():
        kinds = {i.kind for i in db.session.get(Account, identity.account_id).identities}
        assert kinds == {"upstream", "phone"}  # the email stays with its owner


def test_unverified_upstream_email_is_not_added_to_a_new_account(app, http, rp, upstream_op):
    oidc_provider(app, upstream_op)
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.bob))
    sub_at_rp(rp, request, create_account_on(browser, page))
    [identity] = upstream_identities(app)
    with app.app_context():
        assert {i.kind for i in db.session.get(Account, identity.account_id).identities} == {"upstream", "phone"}
        assert db.session.scalar(db.select(Identity).filter_by(kind="email", value=upstream_op.bob.email)) is None


def test_discovery_issuer_must_match(app, open_platform):
    with app.app_context(), pytest.raises(InvalidInput, match="issuer"):
        create_provider(slug="liar", name="Liar", discovery_url=open_platform.url, client_id="x", client_secret="y")
        assert db.session.scalar(db.select(UpstreamProvider)) is None


# --- OAuth 2.0 open platform (WeChat-style unionid) --------------------------------------------

def test_one_unionid_from_two_apps_of_a_platform_is_one_account(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    platform_provider(app, open_platform, "wx-mobile", "wx-mobile-app")

    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "wx-web")
    page = browser.go(through_platform(upstream_url))
    assert "Wei" in page.get_data(as_text=True)
    first = sub_at_rp(rp, request, create_account_on(browser, page))
    # the hub authenticated with client_secret_basic and PKCE (the platform checked both)
    token_request = open_platform.token_requests[-1]
    assert token_request["authorization"].startswith("Basic ") and "client_secret" not in token_request["form"]
    assert token_request["form"]["code_verifier"]

    other = Browser(app.test_client(), ISSUER)
    request, upstream_url = start_at_hub(other, rp, "wx-mobile")
    response = other.go(through_platform(upstream_url))
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri)  # no prompt
    assert sub_at_rp(rp, request, response)["sub"] == first["sub"]
    web, mobile = upstream_identities(app)
    assert web.account_id == mobile.account_id
    assert (web.namespace, web.value, web.unionid) == ("wx-web", "wx-web-app:union-1", "union-1")
    assert (mobile.namespace, mobile.value, mobile.unionid) == ("wx-mobile", "wx-mobile-app:union-1", "union-1")

    # another person of the platform is not that account
    open_platform.person = {"unionid": "union-2", "nickname": "Li"}
    third = Browser(app.test_client(), ISSUER)
    _, upstream_url = start_at_hub(third, rp, "wx-mobile")
    assert pending_uid(third.go(through_platform(upstream_url)))


def test_unionid_of_another_platform_is_not_the_same_person(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    open_platform.clients["qq-app"] = "qq-secret"
    with app.app_context():
        create_provider(slug="qq", name="QQ", authorization_endpoint=open_platform.url + "/authorize",
                        token_endpoint=open_platform.url + "/token", userinfo_endpoint=open_platform.url + "/userinfo",
                        client_id="qq-app", client_secret="qq-secret", platform="qq",
                        claim_mapping={"openid": "sub", "unionid": "unionid"})
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "wx-web")
    sub_at_rp(rp, request, create_account_on(browser, browser.go(through_platform(upstream_url))))
    other = Browser(app.test_client(), ISSUER)
    _, upstream_url = start_at_hub(other, rp, "qq")
    assert pending_uid(other.go(through_platform(upstream_url)))


# --- what is refused ----------------------------------------------------------------------------

def test_state_mismatch_replay_and_other_browsers_are_refused(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "wx-web")
    callback = through_platform(upstream_url)

    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    response = browser.go(forged)
    assert response.status_code == 400 and "not expected by this browser" in response.get_data(as_text=True)

    stranger = Browser(app.test_client(), ISSUER)  # the right state, but in another browser
    assert stranger.go(callback).status_code == 400

    page = browser.go(callback)
    assert pending_uid(page)
    assert stranger.go(page.request.url).status_code == 400  # the pending login is bound to the browser too

    replay = browser.go(callback)
    assert replay.status_code == 400 and "not expected by this browser" in replay.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(PendingUpstreamLogin.id))) == 1
    assert upstream_identities(app) == []


def test_an_upstream_error_is_shown_clearly(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    open_platform.deny = True
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "wx-web")
    page = browser.go(through_platform(upstream_url))
    text = page.get_data(as_text=True)
    assert page.status_code == 400 and "did not log you in: the user said no" in text
    assert "Back to the login page" in text


def test_a_wrong_client_secret_fails_with_a_page(app, http, rp, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    open_platform.clients["wx-web-app"] = "rotated"
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "wx-web")
    page = browser.go(through_platform(upstream_url))
    assert page.status_code == 502 and "refused the code: invalid_client" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(SSOSession.id))) == 0


def test_upstreams_on_private_addresses_are_refused(app, http, rp, open_platform, upstream_op):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = False
    try:
        with app.app_context(), pytest.raises(InvalidInput):
            create_provider(slug="inside", name="Inside", discovery_url=upstream_op.issuer,
                            client_id=upstream_op.client_id, client_secret=upstream_op.client_secret)
        with app.app_context(), pytest.raises(InvalidInput, match="non-public"):
            create_provider(slug="inside", name="Inside",
                            discovery_url="https://127.0.0.1/.well-known/openid-configuration",
                            client_id="x", client_secret="y")
        # configured while allowed, then refused at login time: the token request never leaves
        browser = Browser(http, ISSUER)
        _, upstream_url = start_at_hub(browser, rp, "wx-web")
        page = browser.go(through_platform(upstream_url))
        assert page.status_code == 502 and "could not be reached" in page.get_data(as_text=True)
        assert open_platform.token_requests == []
    finally:
        app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"] = True


def test_an_oauth2_upstream_needs_a_subject_mapping(app):
    with app.app_context(), pytest.raises(InvalidInput, match="sub"):
        create_provider(slug="nosub", name="No sub", authorization_endpoint="https://a.example.com/auth",
                        token_endpoint="https://a.example.com/token", userinfo_endpoint="https://a.example.com/me",
                        client_id="x", client_secret="y")


def test_start_needs_a_live_interaction(app, http, open_platform):
    platform_provider(app, open_platform, "wx-web", "wx-web-app")
    assert http.get("/upstream/wx-web/start?interaction=nope").status_code == 400
    assert http.get("/upstream/wx-web/callback?state=x&code=y").status_code == 400


# --- linking with a one-time code ---------------------------------------------------------------

@pytest.fixture
def sms_file(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "TESSERA_SMS_SENDER", "file")
    monkeypatch.setitem(app.config, "TESSERA_SMS_FILE", str(tmp_path / "sms.jsonl"))
    return tmp_path / "sms.jsonl"


def last_code(sms_file, phone: str) -> str:
    lines = [json.loads(line) for line in sms_file.read_text().splitlines()]
    return [entry for entry in lines if entry["phone"] == phone][-1]["code"]


def send_link_code(browser: Browser, page, phone: str):
    return browser.submit(page, {"phone": phone, "submit": "Send a code"},
                          url=f"/upstream/pending/{pending_uid(page)}/link/phone")


def test_link_with_a_code_to_the_accounts_phone(app, http, rp, factories, upstream_op, sms_file):
    oidc_provider(app, upstream_op, matching_mode="verified_phone")
    mine = factories.account(phone=upstream_op.alice.phone)  # verified on both sides: suggested
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    text = page.get_data(as_text=True)
    assert 'id="suggestion"' in text
    assert re.search(r'<input[^>]*name="phone"[^>]*value="\+14155550201"', text)

    code_page = send_link_code(browser, page, mine.phone)
    assert code_page.status_code == 200 and 'name="code"' in code_page.get_data(as_text=True)
    code = last_code(sms_file, mine.phone)
    wrong = browser.submit(code_page, {"code": "000000" if code != "000000" else "111111", "submit": "Link and log in"})
    assert wrong.status_code == 401 and upstream_identities(app) == []

    response = browser.submit(wrong, {"code": code, "submit": "Link and log in"},
                              url=f"/upstream/pending/{pending_uid(page)}/link/code")
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri)
    sub_at_rp(rp, request, response)
    assert [i.account_id for i in upstream_identities(app)] == [mine.id]
    with app.app_context():
        session = db.session.scalars(db.select(SSOSession).order_by(SSOSession.id.desc())).first()
        assert session.account_id == mine.id and session.amr == ["fed", "sms"]
    assert ("identity.linked", {"identity": "upstream", "provider": "tessera-up", "proof": "otp"}) in audit_kinds(app, mine.id)


def test_a_code_to_a_number_without_account_links_nothing(app, http, rp, factories, upstream_op, sms_file):
    oidc_provider(app, upstream_op)
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    code_page = send_link_code(browser, page, "+14155550999")
    assert code_page.status_code == 200  # the same answer as for a number with an account
    refused = browser.submit(code_page, {"code": last_code(sms_file, "+14155550999"), "submit": "Link and log in"})
    assert refused.status_code == 401 and "no account here has this phone number" in refused.get_data(as_text=True)
    assert upstream_identities(app) == []


# --- ID token checks ----------------------------------------------------------------------------

def test_an_id_token_not_signed_by_the_upstreams_keys_is_refused(app, http, rp, upstream_op, open_platform):
    oidc_provider(app, upstream_op)
    with app.app_context():  # the upstream's keys are replaced by a stranger's
        db.session.scalar(db.select(UpstreamProvider)).jwks_uri = open_platform.url + "/jwks"
        db.session.commit()
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    assert page.status_code == 502 and "ID token is not valid" in page.get_data(as_text=True)
    assert upstream_identities(app) == []


def test_an_id_token_with_another_nonce_is_refused(app, http, rp, upstream_op):
    oidc_provider(app, upstream_op)
    browser = Browser(http, ISSUER)
    _, upstream_url = start_at_hub(browser, rp, "tessera-up")
    callback = through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice)
    with http.session_transaction() as flask_session:
        flows = flask_session["upstream_flows"]
        for flow in flows.values():
            flow["nonce"] = "not-the-nonce-sent"
        flask_session["upstream_flows"] = flows
    page = browser.go(callback)
    assert page.status_code == 502 and "nonce" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(PendingUpstreamLogin.id))) == 0
