"""Upstream identity providers for the federation tests, on real sockets:

- ``upstream_op``: a second Tessera, started with ``tessera serve`` in a subprocess on a fresh
  SQLite database, with a trusted confidential client whose redirect URIs are this test hub's
  callbacks (http://localhost/upstream/<slug>/callback);
- ``open_platform``: a tiny OAuth 2.0 "open platform" in the WeChat style (no ID token; userinfo
  answers openid, unionid, nickname; the openid differs per app, the unionid does not), which
  checks client_secret_basic and PKCE like a real one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.conftest import GENEROUS_BUDGETS
from tests.processes import REPO_ROOT, TESSERA, free_port, tessera_server
from tests.test_live_server import _env, _run

HUB = "http://localhost"
#: Slugs the upstream Tessera accepts callbacks for (its client's redirect URIs).
OIDC_SLUGS = ("tessera-up", "tessera-match")


@dataclass
class UpstreamUser:
    phone: str
    password: str
    email: str
    name: str


@dataclass
class UpstreamOP:
    issuer: str
    client_id: str
    client_secret: str
    alice: UpstreamUser  # email verified at the upstream
    bob: UpstreamUser    # email NOT verified at the upstream


@pytest.fixture(scope="module")
def upstream_op(tmp_path_factory):
    import subprocess

    workdir = tmp_path_factory.mktemp("upstream-op")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = _env(workdir, issuer)
    env.update(GENEROUS_BUDGETS)  # every test logs in from 127.0.0.1
    alice = UpstreamUser("+14155550201", "alice-upstream-pw", "alice@example.com", "Alice Upstream")
    bob = UpstreamUser("+14155550202", "bob-upstream-pw", "bob@example.com", "Bob Upstream")
    _run(["db", "upgrade"], workdir, env)
    _run(["tenants", "create", "--slug", "up", "--name", "Upstream Group"], workdir, env)
    for user in (alice, bob):
        _run(["users", "create", "--phone", user.phone, "--password", user.password, "--email", user.email,
              "--name", user.name], workdir, env)
    # Bob's email was never verified at the upstream (the CLI creates verified identities).
    with sqlite3.connect(workdir / "tessera.db") as conn:
        assert conn.execute("UPDATE identities SET verified = 0 WHERE kind = 'email' AND value = ?",
                            (bob.email,)).rowcount == 1
    args = ["clients", "create", "--tenant", "up", "--name", "Test hub", "--trusted", "--client-id", "test-hub", "--json"]
    for slug in OIDC_SLUGS:
        args += ["--redirect-uri", f"{HUB}/upstream/{slug}/callback"]
    result = subprocess.run([TESSERA, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)

    with tessera_server(workdir, env, port, cwd=REPO_ROOT):
        yield UpstreamOP(issuer, client["client_id"], client["client_secret"], alice, bob)


@dataclass
class OpenPlatform:
    """State of the fake open platform: who is "logged in" there, what it received."""

    url: str
    clients: dict = field(default_factory=dict)          # client_id -> secret
    person: dict = field(default_factory=lambda: {"unionid": "union-1", "nickname": "Wei"})
    codes: dict = field(default_factory=dict)            # code -> (client_id, redirect_uri, challenge, person)
    tokens: dict = field(default_factory=dict)           # access token -> (client_id, person)
    token_requests: list = field(default_factory=list)
    deny: bool = False
    jwks: dict = field(default_factory=dict)              # served at /jwks: keys nobody else trusts
    issuer_in_discovery: str = "https://elsewhere.example.com"

    def openid(self, client_id: str, person: dict) -> str:
        return f"{client_id}:{person['unionid']}"  # per-app id, like WeChat's openid


@pytest.fixture
def open_platform():
    from joserfc.jwk import RSAKey

    platform = OpenPlatform(url="")
    stranger_key = RSAKey.generate_key(2048, parameters={"kid": "stranger", "alg": "RS256", "use": "sig"})
    platform.jwks = {"keys": [stranger_key.as_dict(private=False)]}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/authorize":
                if platform.deny:
                    target = q["redirect_uri"] + "?" + urlencode(
                        {"error": "access_denied", "error_description": "the user said no", "state": q["state"]})
                    return self._send(302, headers={"Location": target})
                code = secrets.token_urlsafe(16)
                platform.codes[code] = (q["client_id"], q["redirect_uri"], q.get("code_challenge"), dict(platform.person))
                target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                return self._send(302, headers={"Location": target})
            if parts.path == "/userinfo":
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if token not in platform.tokens:
                    return self._send(401, {"error": "invalid_token"})
                client_id, person = platform.tokens[token]
                return self._send(200, {"openid": platform.openid(client_id, person), "unionid": person["unionid"],
                                        "nickname": person["nickname"]})
            if parts.path == "/jwks":
                return self._send(200, platform.jwks)
            if parts.path == "/.well-known/openid-configuration":
                return self._send(200, {"issuer": platform.issuer_in_discovery,
                                        "authorization_endpoint": platform.url + "/authorize",
                                        "token_endpoint": platform.url + "/token", "jwks_uri": platform.url + "/jwks"})
            return self._send(404, {"error": "not_found"})

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            platform.token_requests.append({"form": form, "authorization": self.headers.get("Authorization")})
            basic = (self.headers.get("Authorization") or "").removeprefix("Basic ")
            try:
                client_id, _, secret = base64.b64decode(basic).decode().partition(":")
            except ValueError:
                client_id = secret = ""
            if platform.clients.get(client_id) != secret or not secret:
                return self._send(401, {"error": "invalid_client"})
            entry = platform.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if entry is None or entry[0] != client_id or entry[1] != form.get("redirect_uri") or entry[2] != challenge:
                return self._send(400, {"error": "invalid_grant"})
            token = secrets.token_urlsafe(16)
            platform.tokens[token] = (client_id, entry[3])
            return self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 7200})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    platform.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield platform
    server.shutdown()
    server.server_close()
