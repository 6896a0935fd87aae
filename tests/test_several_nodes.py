"""The hub scaled out the way an operator runs it: two ``tessera serve`` processes on their own
ports, sharing one PostgreSQL database (the suite's) and one Redis. What one node or the CLI
changes, the other honours within a second: a disabled client, a key rotation; rate limits and
logouts are shared.

The timing assertions are about requests *started* after the change (``_refused_within``): a
slow machine makes the test wait longer, never makes it fail. Runs in the PostgreSQL run of the
suite (``TESSERA_TEST_DATABASE_URL``) with Redis on 127.0.0.1:6379 (database 11, flushed first).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from urllib.parse import urljoin

import pytest
import redis
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.processes import TESSERA, Processes, free_port
from tests.rp import csrf_token, query_of

REDIS_URL = os.environ.get("TESSERA_TEST_NODES_REDIS_URL", "redis://127.0.0.1:6379/11")
#: What "within a second" means here: a request started this long after a change sees it.
BOUND = 1.0
REDIRECT_URI = "https://shop.example.org/cb"
#: Wrong passwords for one identifier until the credential budget refuses, counted in Redis by both nodes.
LOGIN_BUDGET = 6


def _database_url() -> str | None:
    url = os.environ.get("TESSERA_TEST_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


pytestmark = pytest.mark.skipif(_database_url() is None,
                                reason="several nodes share a PostgreSQL database (the PostgreSQL run of make test)")


@pytest.fixture
def redis_db():
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def seeded(app, factories):
    """A tenant, a person, a trusted web client and a client-credentials client, in the suite's
    database (emptied after the test like every other)."""
    tenant = factories.tenant()
    return {
        "account": factories.account(),
        "web": factories.client(redirect_uri=REDIRECT_URI, tenant=tenant, trusted=True),
        "server": factories.client(grant_types=["client_credentials"], redirect_uris=[], tenant=tenant,
                                   scope="partner:read"),
    }


@pytest.fixture
def nodes(app, seeded, redis_db, tmp_path):
    """Two hub processes on one database and one Redis; yields (env, node 1 URL, node 2 URL). The
    issuer is node 1's URL on both, as both would sit behind one public name."""
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_ISSUER=urls[0],
        TESSERA_DATABASE_URL=_database_url(),
        TESSERA_REDIS_URL=REDIS_URL,
        TESSERA_INSTANCE_DIR=str(tmp_path / "instance"),
        # The suite's secret key: the signing keys in the database are encrypted with it.
        TESSERA_SECRET_KEY=app.config["SECRET_KEY"],
        # The credential budget per identifier: LOGIN_BUDGET - 1 failures, the next check refused.
        TESSERA_CREDENTIAL_BUDGET_TARGET=f"{LOGIN_BUDGET - 1} per hour",
    )
    processes = Processes(tmp_path, env)
    try:
        for n, (port, url) in enumerate(zip(ports, urls), start=1):
            server = processes.start(f"node{n}", [TESSERA, "serve", "--host", "127.0.0.1", "--port", str(port),
                                                  "--workers", "1"])
            processes.wait_until_up(server, f"{url}/.well-known/openid-configuration")
        yield env, urls[0], urls[1]
    finally:
        processes.stop_all()


def _tessera(env: dict, *args: str) -> str:
    result = subprocess.run([TESSERA, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"tessera {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _refused_within(check, changed_at: float, give_up: float = 30.0) -> None:
    """Ask ``check()`` (True once the change is honoured) again and again: every request started
    more than ``BOUND`` seconds after ``changed_at`` must already see the change."""
    while True:
        started = time.monotonic()
        if check():
            return
        assert started - changed_at <= BOUND, f"a request started {started - changed_at:.2f} s after the change did not see it"
        assert started - changed_at < give_up
        time.sleep(0.02)


def _client_credentials(node: str, client) -> requests.Response:
    return requests.post(f"{node}/token", data={"grant_type": "client_credentials", "scope": "partner:read"},
                         auth=(client.client_id, client.client_secret), timeout=30)


class _RP:
    """The trusted web client, speaking to whichever node the load balancer picked."""

    def __init__(self, client, issuer: str):
        self.client, self.issuer = client, issuer

    def session(self) -> OAuth2Session:
        return OAuth2Session(self.client.client_id, self.client.client_secret, scope="openid",
                             redirect_uri=REDIRECT_URI, code_challenge_method="S256")

    def authorize_url(self, node: str, **params) -> tuple[str, str]:
        verifier = generate_token(48)
        url, _ = self.session().create_authorization_url(f"{node}/authorize", code_verifier=verifier,
                                                         nonce=generate_token(20), **params)
        return url, verifier

    def tokens(self, node: str, code: str, verifier: str) -> dict:
        return self.session().fetch_token(f"{node}/token", code=code, code_verifier=verifier)


def _log_in(browser: requests.Session, rp: _RP, node: str, account) -> dict:
    """A login through ``node``: the code flow, with the login form; returns the tokens."""
    url, verifier = rp.authorize_url(node)
    response = browser.get(url, allow_redirects=True, timeout=30)
    assert response.status_code == 200 and 'name="password"' in response.text, response.text[:300]
    posted = browser.post(response.url, data={"csrf_token": csrf_token(response.text), "login": account.phone,
                                              "password": account.password, "submit": "Log in"},
                          allow_redirects=False, timeout=30)
    while posted.status_code in (302, 303) and not posted.headers["Location"].startswith(REDIRECT_URI):
        posted = browser.get(urljoin(posted.url, posted.headers["Location"]), allow_redirects=False, timeout=30)
    assert posted.status_code == 302, (posted.status_code, posted.text[:300])
    return rp.tokens(node, query_of(posted.headers["Location"])["code"], verifier)


def _silent(browser: requests.Session, rp: _RP, node: str) -> dict:
    """prompt=none at ``node`` with the browser's cookies: the parameters sent back to the client."""
    url, verifier = rp.authorize_url(node, prompt="none")
    response = browser.get(url, allow_redirects=False, timeout=30)
    assert response.status_code == 302 and response.headers["Location"].startswith(REDIRECT_URI), response.text[:300]
    return dict(query_of(response.headers["Location"]), verifier=verifier)


def test_two_nodes_honour_each_others_changes(nodes, seeded):
    env, node1, node2 = nodes
    rp = _RP(seeded["web"], issuer=node1)

    # (a) the client works on both nodes (and each has it cached); disabled by the CLI, both
    # refuse it within the bound.
    server = seeded["server"]
    assert _client_credentials(node1, server).status_code == 200
    assert _client_credentials(node2, server).status_code == 200
    _tessera(env, "clients", "disable", server.client_id)
    changed_at = time.monotonic()
    for node in (node1, node2):
        _refused_within(lambda node=node: _client_credentials(node, server).status_code == 401, changed_at)
    assert _client_credentials(node2, server).json()["error"] == "invalid_client"

    # (d, first half) one login on node 1 is a session on node 2 too.
    with requests.Session() as browser:
        tokens = _log_in(browser, rp, node1, seeded["account"])
        silent = _silent(browser, rp, node2)
        assert "code" in silent, silent

        # (b) a key rotated by the CLI: node 2 publishes the new keys and signs with the new
        # current key within the bound.
        old_kids = {key["kid"] for key in requests.get(f"{node2}/jwks", timeout=30).json()["keys"]}
        rotated = _tessera(env, "keys", "rotate", "--json")
        changed_at = time.monotonic()
        keys = json.loads(rotated)
        current = next(k["kid"] for k in keys if k["state"] == "current" and k["alg"] == "RS256")
        upcoming = next(k["kid"] for k in keys if k["state"] == "next" and k["alg"] == "RS256")
        assert upcoming not in old_kids
        _refused_within(lambda: upcoming in {key["kid"] for key in requests.get(f"{node2}/jwks", timeout=30).json()["keys"]},
                        changed_at)
        silent = _silent(browser, rp, node2)
        id_token = rp.tokens(node2, silent["code"], silent["verifier"])["id_token"]
        decoded = jwt.decode(id_token, KeySet.import_key_set(requests.get(f"{node2}/jwks", timeout=30).json()))
        assert decoded.header["kid"] == current

        # (d) RP-initiated logout on node 1 ends the session on node 2.
        logout = browser.get(f"{node1}/logout", params={"id_token_hint": tokens["id_token"]}, timeout=30)
        assert logout.status_code == 200
        assert _silent(browser, rp, node2).get("error") == "login_required"

    # (c) the login budget of this address, spent on node 1, is spent on node 2.
    with requests.Session() as browser:
        url, _ = rp.authorize_url(node1)
        page = browser.get(url, timeout=30)
        form = {"csrf_token": csrf_token(page.text), "login": seeded["account"].phone, "password": "wrong",
                "submit": "Log in"}
        statuses = [browser.post(page.url, data=form, allow_redirects=False, timeout=30).status_code
                    for _ in range(LOGIN_BUDGET)]
        assert statuses[-1] == 429, statuses
        on_node2 = browser.post(page.url.replace(node1, node2), data=form, allow_redirects=False, timeout=30)
        assert on_node2.status_code == 429
