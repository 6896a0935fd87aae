"""The happy path against a live hub on a real socket: ``tessera db upgrade``, ``tessera demo seed``
and ``tessera serve`` (gunicorn) run as subprocesses on a SQLite file in a temporary directory;
the relying party is Authlib's requests client (``OAuth2Session``), the browser a
``requests.Session``, and the ID token is checked with joserfc against the published JWKS and
with ``authlib.oidc.core.CodeIDToken``."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.processes import REPO_ROOT, TESSERA, free_port, tessera_server


DEMO_CLIENT_ID = "demo-web"
DEMO_CLIENT_SECRET = "demo-web-GaFskrPhA3NJT3h4W5stOCe4l4_zCH-0"
DEMO_REDIRECT_URI = "http://127.0.0.1:5001/callback"
DEMO_LOGIN = "+14155550123"
DEMO_PASSWORD = "demo-password"

#: JWK members that only a private (or symmetric) key has (RFC 7518 6.2.2, 6.3.2, 6.4).
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _env(workdir: Path, issuer: str, isolated: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    if isolated:  # nothing on the import path but what the installed package brings
        env.pop("PYTHONPATH", None)
    env.update(
        TESSERA_ISSUER=issuer,
        TESSERA_DATABASE_URL=f"sqlite:///{workdir / 'tessera.db'}",
        TESSERA_INSTANCE_DIR=str(workdir / "instance"),
        TESSERA_SECRET_KEY="live-server-test-secret-key-0123456789abcdef",
        TESSERA_ALLOW_PRIVATE_OUTBOUND="1",
    )
    return env


def _run(args: list[str], cwd: Path, env: dict) -> None:
    result = subprocess.run([TESSERA, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"tessera {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


@contextlib.contextmanager
def live_hub(workdir: Path, serve_cwd: Path, isolated: bool = False):
    """Migrate and seed a database in ``workdir``, start ``tessera serve`` from ``serve_cwd`` on a
    free port, wait until discovery answers; yield the issuer. Always stops the server."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = _env(workdir, issuer, isolated)
    _run(["db", "upgrade"], workdir, env)
    _run(["demo", "seed"], workdir, env)

    with tessera_server(workdir, env, port, cwd=serve_cwd):
        yield issuer


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    """A live hub with the demo data. ``tessera serve`` runs from the source tree, the way
    ``make run`` starts it; every file it writes lives in a temporary directory."""
    workdir = tmp_path_factory.mktemp("live-hub")
    with live_hub(workdir, serve_cwd=REPO_ROOT) as issuer:
        yield issuer


@pytest.fixture(scope="module")
def metadata(issuer) -> dict:
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


# --- discovery ---------------------------------------------------------------------------------

def test_discovery_document(issuer, metadata):
    # OpenID Connect Discovery 1.0, section 3 (REQUIRED members) and 4.3 (issuer must match)
    assert metadata["issuer"] == issuer
    for member in ("authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
                   "subject_types_supported", "id_token_signing_alg_values_supported"):
        assert metadata.get(member), member
    for member in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert metadata[member].startswith(issuer + "/"), (member, metadata[member])
    assert "code" in metadata["response_types_supported"]
    assert set(metadata["subject_types_supported"]) <= {"pairwise", "public"}
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert "none" not in metadata["id_token_signing_alg_values_supported"]
    assert "openid" in metadata.get("scopes_supported", ["openid"])
    assert "S256" in metadata["code_challenge_methods_supported"]


def test_jwks_publishes_only_public_keys(metadata):
    response = requests.get(metadata["jwks_uri"], timeout=10)
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    kids = [key.get("kid") for key in keys]
    assert all(kids) and len(set(kids)) == len(kids)
    for key in keys:
        assert key["kty"] in ("RSA", "EC"), key
        assert not PRIVATE_JWK_MEMBERS & set(key), f"private members published: {PRIVATE_JWK_MEMBERS & set(key)}"
    algs = {key.get("alg") for key in keys}
    assert {"RS256", "ES256"} <= algs
    KeySet.import_key_set(response.json())  # parses as a JWK Set


# --- the authorization code flow -----------------------------------------------------------------

class _InputCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.inputs[attrs["name"]] = attrs.get("value") or ""


def _csrf_token(html: str) -> str:
    parser = _InputCollector()
    parser.feed(html)
    assert parser.inputs.get("csrf_token"), "the login page has no csrf_token hidden input"
    return parser.inputs["csrf_token"]


def _follow_inside_hub(browser: requests.Session, response: requests.Response, issuer: str) -> requests.Response:
    """Follow redirects like a browser, but stop at the first one that leaves the hub."""
    for _ in range(10):
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        location = urljoin(response.url, response.headers["Location"])
        if not location.startswith(issuer + "/"):
            return response
        response = browser.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("too many redirects inside the hub")


def test_code_flow_with_pkce_for_the_trusted_demo_client(issuer, metadata):
    oauth = OAuth2Session(
        DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, scope="openid profile email", redirect_uri=DEMO_REDIRECT_URI,
        code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
    )
    nonce, code_verifier = generate_token(20), generate_token(48)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], nonce=nonce, code_verifier=code_verifier
    )
    assert "code_challenge_method=S256" in url

    with requests.Session() as browser:
        page = _follow_inside_hub(browser, browser.get(url, allow_redirects=False, timeout=10), issuer)
        assert page.status_code == 200, (page.status_code, page.headers.get("Location"), page.text[:500])
        assert page.url.startswith(issuer + "/")
        assert 'name="password"' in page.text

        form = {"csrf_token": _csrf_token(page.text), "login": DEMO_LOGIN, "password": DEMO_PASSWORD,
                "submit": "Log in"}
        posted = browser.post(page.url, data=form, allow_redirects=False, timeout=30)
        assert posted.status_code in (302, 303), (posted.status_code, posted.text[:500])
        # demo-web is a trusted (first-party) client: no consent page, straight back to the client
        final = _follow_inside_hub(browser, posted, issuer)

    assert final.status_code == 302, (final.status_code, final.url, final.text[:500])
    location = final.headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == DEMO_REDIRECT_URI, location
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expected = {"code", "state", "iss"}
    if metadata.get("check_session_iframe"):  # OpenID Connect Session Management 1.0, section 2
        expected.add("session_state")
    assert set(params) == expected, params  # and nothing else: no tokens in the front channel
    assert params["state"] == state
    assert params["iss"] == issuer  # RFC 9207

    token = oauth.fetch_token(metadata["token_endpoint"], code=params["code"], code_verifier=code_verifier)
    assert token["token_type"].lower() == "bearer"
    assert token["access_token"] and token["id_token"]
    assert token["expires_in"] > 0

    jwks = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(token["id_token"], jwks, algorithms=metadata["id_token_signing_alg_values_supported"])
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["kid"] in {key.kid for key in jwks.keys}
    claims = CodeIDToken(
        decoded.claims, decoded.header,
        options={"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": DEMO_CLIENT_ID}},
        params={"nonce": nonce, "client_id": DEMO_CLIENT_ID, "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)
    for claim in ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"):
        assert claim in claims, claim
    assert claims["nonce"] == nonce

    info = requests.get(metadata["userinfo_endpoint"], timeout=10,
                        headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 200, info.text
    userinfo = info.json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["email"] == "demo@example.com"
    assert userinfo["name"] == "Demo User"
    assert re.fullmatch(r"[A-Za-z0-9_\-]{16,255}", userinfo["sub"]), userinfo["sub"]  # pairwise, opaque

    # the code is single use, and using it twice revokes what it was exchanged for (RFC 6749 4.1.2)
    replay = requests.post(
        metadata["token_endpoint"], auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), timeout=10,
        data={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": DEMO_REDIRECT_URI,
              "code_verifier": code_verifier},
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    again = requests.get(metadata["userinfo_endpoint"], timeout=10,
                         headers={"Authorization": f"Bearer {token['access_token']}"})
    assert again.status_code == 401
    assert "invalid_token" in again.headers.get("WWW-Authenticate", "")


# --- operating -----------------------------------------------------------------------------------

def test_serve_runs_from_any_working_directory(tmp_path):
    """``tessera`` is an installed console script: an operator may start it from any directory
    (a systemd unit's WorkingDirectory, a container's workdir), not only from the source tree."""
    with live_hub(tmp_path, serve_cwd=tmp_path, isolated=True) as issuer:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        assert response.status_code == 200
        assert response.json()["issuer"] == issuer
