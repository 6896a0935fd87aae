"""The benchmark scenarios. Each builds per-thread state (a session, a refresh-token chain, an
access token) during setup and returns one callable per thread; a call is one operation and
raises ``AssertionError`` when the hub's answer is not the expected one."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
import threading
from urllib.parse import urlencode

from httpclient import Client, basic_auth, path_of

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
SCOPE = "openid profile email phone"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _expect(response, status: int, what: str):
    if response.status != status:
        raise AssertionError(f"{what}: HTTP {response.status} (expected {status}): {response.body[:200]!r}")
    return response


class Hub:
    """The seeded hub as the driver sees it."""

    def __init__(self, client: Client, seed: dict):
        self.http, self.seed = client, seed
        self.web, self.app, self.partner = seed["web"], seed["app"], seed["partner"]
        self.web_auth = basic_auth(self.web["client_id"], self.web["client_secret"])
        self.partner_auth = basic_auth(self.partner["client_id"], self.partner["client_secret"])
        self._logins = itertools.cycle(seed["logins"])
        self._lock = threading.Lock()

    def next_login(self) -> str:
        with self._lock:
            return next(self._logins)

    # --- building blocks ----------------------------------------------------------------------
    def authorize_path(self, client: dict, state: str, challenge: str, scope: str = SCOPE) -> str:
        return "/authorize?" + urlencode({
            "response_type": "code", "client_id": client["client_id"], "redirect_uri": client["redirect_uri"],
            "scope": scope, "state": state, "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge, "code_challenge_method": "S256",
        })

    def code_from(self, response, state: str, client: dict) -> str:
        _expect(response, 302, "authorization response")
        if not response.location.startswith(client["redirect_uri"]):
            raise AssertionError(f"authorization response went to {response.location[:200]}")
        params = response.query()
        if params.get("state") != state or "code" not in params:
            raise AssertionError(f"bad authorization response: {params}")
        return params["code"]

    def password_login(self, login: str, cookies: dict | None = None, scope: str = SCOPE) -> tuple[dict, dict]:
        """authorize → login page → POST the form → resume → code → token. Returns (cookies, tokens)."""
        http, web = self.http, self.web
        cookies = dict(cookies or {})
        state = secrets.token_urlsafe(12)
        verifier, challenge = _pkce()
        r = _expect(http.get(self.authorize_path(web, state, challenge, scope)), 302, "authorize")
        cookies.update(r.cookies)
        login_path = path_of(r.location)
        if not login_path.startswith("/interaction/"):
            raise AssertionError(f"authorize did not ask for a login: {r.location}")
        r = _expect(http.get(login_path, cookies=cookies), 200, "login page")
        cookies.update(r.cookies)
        match = CSRF_RE.search(r.text())
        if not match:
            raise AssertionError("login page has no CSRF token")
        r = _expect(http.post(login_path, cookies=cookies, form={
            "csrf_token": match.group(1), "login": login, "password": self.seed["password"], "submit": "Log in",
        }), 302, "login POST")
        cookies.update(r.cookies)
        r = http.get(path_of(r.location), cookies=cookies)
        cookies.update(r.cookies)
        code = self.code_from(r, state, web)
        tokens = self.exchange(web, code, verifier)
        return cookies, tokens

    def exchange(self, client: dict, code: str, verifier: str) -> dict:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uri"],
                "code_verifier": verifier}
        headers = {}
        if client.get("client_secret"):
            headers["Authorization"] = basic_auth(client["client_id"], client["client_secret"])
        else:
            form["client_id"] = client["client_id"]
        r = _expect(self.http.post("/token", form=form, headers=headers), 200, "token (code)")
        return r.json()

    def userinfo(self, access_token: str) -> dict:
        r = _expect(self.http.get("/userinfo", headers={"Authorization": "Bearer " + access_token}), 200, "userinfo")
        data = r.json()
        if "sub" not in data:
            raise AssertionError(f"userinfo without sub: {data}")
        return data

    def consent_public_app(self, cookies: dict) -> None:
        """Give the public app the user's consent once (remembered), so later flows are SSO only."""
        http, app = self.http, self.app
        state = secrets.token_urlsafe(12)
        verifier, challenge = _pkce()
        r = _expect(http.get(self.authorize_path(app, state, challenge), cookies=cookies), 302, "authorize (app)")
        cookies.update(r.cookies)
        consent_path = path_of(r.location)
        if "/consent" in consent_path:
            r = _expect(http.get(consent_path, cookies=cookies), 200, "consent page")
            cookies.update(r.cookies)
            token = CSRF_RE.search(r.text()).group(1)
            r = _expect(http.post(consent_path, cookies=cookies, form={"csrf_token": token, "approve": "Allow"}),
                        302, "consent POST")
            cookies.update(r.cookies)
            r = http.get(path_of(r.location), cookies=cookies)
        code = self.code_from(r, state, app)
        self.exchange(app, code, verifier)


# --- scenarios: factory(hub, n_threads) -> list of per-thread operations ------------------------
def login_flow(hub: Hub, n: int) -> list:
    """(a) a fresh browser: authorize → login page → POST password → resume → code → token → userinfo."""
    def op():
        _, tokens = hub.password_login(hub.next_login())
        hub.userinfo(tokens["access_token"])
    return [op] * n


def sso_flow(hub: Hub, n: int) -> list:
    """(b) a browser with a hub session: authorize (code at once) → token (PKCE, public client) → userinfo."""
    ops = []
    for _ in range(n):
        cookies, _ = hub.password_login(hub.next_login())
        hub.consent_public_app(cookies)
        session_cookie = {"tessera_session": cookies["tessera_session"]}

        def op(session_cookie=session_cookie):
            state = secrets.token_urlsafe(12)
            verifier, challenge = _pkce()
            r = hub.http.get(hub.authorize_path(hub.app, state, challenge), cookies=session_cookie)
            code = hub.code_from(r, state, hub.app)
            tokens = hub.exchange(hub.app, code, verifier)
            hub.userinfo(tokens["access_token"])
        ops.append(op)
    return ops


def refresh_grant(hub: Hub, n: int) -> list:
    """(c) refresh_token grant with rotation: each call presents the refresh token the previous one returned."""
    ops = []
    for _ in range(n):
        _, tokens = hub.password_login(hub.next_login())
        chain = {"rt": tokens["refresh_token"]}

        def op(chain=chain):
            r = hub.http.post("/token", headers={"Authorization": hub.web_auth},
                              form={"grant_type": "refresh_token", "refresh_token": chain["rt"]})
            if r.status != 200:
                # the chain is broken (should not happen): start a new one so the run goes on
                chain["rt"] = hub.password_login(hub.next_login())[1]["refresh_token"]
                _expect(r, 200, "token (refresh)")
            data = r.json()
            chain["rt"] = data["refresh_token"]
        ops.append(op)
    return ops


def client_credentials(hub: Hub, n: int) -> list:
    """(d) client_credentials grant of a confidential partner server (client_secret_basic)."""
    def op():
        r = hub.http.post("/token", headers={"Authorization": hub.partner_auth},
                          form={"grant_type": "client_credentials", "scope": "introspection"})
        _expect(r, 200, "token (client_credentials)")
    return [op] * n


def _access_tokens(hub: Hub, n: int) -> list[str]:
    return [hub.password_login(hub.next_login())[1]["access_token"] for _ in range(n)]


def userinfo(hub: Hub, n: int) -> list:
    """(e) GET /userinfo with a bearer access token."""
    return [lambda at=at: hub.userinfo(at) for at in _access_tokens(hub, n)]


def introspection(hub: Hub, n: int) -> list:
    """(f) POST /introspect of a user's access token by the partner (scope "introspection")."""
    ops = []
    for at in _access_tokens(hub, n):
        def op(at=at):
            r = _expect(hub.http.post("/introspect", headers={"Authorization": hub.partner_auth},
                                      form={"token": at, "token_type_hint": "access_token"}), 200, "introspect")
            if not r.json().get("active"):
                raise AssertionError("introspection says the token is inactive")
        ops.append(op)
    return ops


BATCH = 100


def partner_batch(hub: Hub, n: int) -> list:
    """(g) POST /api/users:batch-read of 100 people by a first-party partner server with a read
    contract (client-credentials token with scope partner:read, fetched once per thread)."""
    reader, subs = hub.seed["reader"], hub.seed["reader_subs"]
    auth = basic_auth(reader["client_id"], reader["client_secret"])
    ops = []
    for i in range(n):
        r = _expect(hub.http.post("/token", headers={"Authorization": auth},
                                  form={"grant_type": "client_credentials", "scope": "partner:read"}), 200, "token")
        bearer = {"Authorization": "Bearer " + r.json()["access_token"]}
        windows = itertools.cycle([subs[k:k + BATCH] for k in range(0, len(subs) - BATCH + 1, 25)][i:] or [subs[:BATCH]])

        def op(bearer=bearer, windows=windows):
            batch = next(windows)
            body = _expect(hub.http.post("/api/users:batch-read", headers=bearer, json_body={"subs": batch}),
                           200, "batch read").json()
            if len(body["users"]) != len(batch) or body["not_found"]:
                raise AssertionError(f"batch read returned {len(body['users'])} of {len(batch)} people")
        ops.append(op)
    return ops


def hello(client: Client, n: int) -> list:
    """(h) the framework's ceiling: GET /hello of a bare Flask app."""
    def op():
        _expect(client.get("/hello"), 200, "hello")
    return [op] * n
