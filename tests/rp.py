"""A browser and a relying party for tests, speaking HTTP to the hub through Flask's test client.

The relying party side uses Authlib's *client* (``OAuth2Session`` builds the authorization URL
with state, nonce and PKCE; ``CodeIDToken`` validates ID tokens against the published JWKS), an
independent implementation of the RP rules, so the hub is checked by what a real client accepts.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def query_of(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Browser:
    """Follows the hub's redirects like a browser (cookies kept) until it leaves the hub."""

    def __init__(self, http, issuer: str):
        self.http, self.issuer = http, issuer
        self.last_page = None

    def go(self, url: str, max_hops: int = 10):
        """GET ``url`` and follow redirects inside the hub. Returns the final response: a page of
        the hub, or a redirect to somewhere else (a client) — see ``.location``."""
        response = self.http.get(url)
        for _ in range(max_hops):
            if response.status_code not in (302, 303):
                break
            location = response.location
            if location.startswith("/"):
                location = self.issuer + location
            if not location.startswith(self.issuer + "/"):
                break
            response = self.http.get(location)
        else:
            raise AssertionError("too many redirects")
        self.last_page = response
        return response

    def submit(self, response, data: dict, url: str | None = None):
        """Submit the form of the page ``response`` (with its CSRF token) and follow redirects."""
        html = response.get_data(as_text=True)
        form = dict(data, csrf_token=csrf_token(html))
        target = url or response.request.url
        result = self.http.post(target, data=form)
        if result.status_code in (302, 303):
            location = self.issuer + result.location if result.location.startswith("/") else result.location
            if location.startswith(self.issuer + "/"):
                return self.go(location)
        self.last_page = result
        return result

    def login(self, page, login: str, password: str):
        return self.submit(page, {"login": login, "password": password, "submit": "Log in"})

    def approve(self, page):
        return self.submit(page, {"approve": "Allow"})

    def deny(self, page):
        return self.submit(page, {"deny": "Deny"})


@dataclass
class AuthRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str | None
    params: dict = field(default_factory=dict)


class RelyingParty:
    def __init__(self, http, issuer: str, client_id: str, client_secret: str | None, redirect_uri: str,
                 auth_method: str = "client_secret_basic"):
        self.http, self.issuer = http, issuer
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.auth_method = auth_method

    @classmethod
    def for_client(cls, http, issuer, test_client, **kwargs):
        return cls(http, issuer, test_client.client_id, test_client.client_secret, test_client.redirect_uri, **kwargs)

    def authorization_request(self, scope: str = "openid", pkce: bool = True, **extra) -> AuthRequest:
        session = OAuth2Session(self.client_id, self.client_secret, scope=scope, redirect_uri=self.redirect_uri,
                                code_challenge_method="S256" if pkce else None)
        nonce = extra.pop("nonce", generate_token(20))
        verifier = generate_token(48) if pkce else None
        kwargs = {"nonce": nonce} if nonce else {}
        if verifier:
            kwargs["code_verifier"] = verifier
        url, state = session.create_authorization_url(f"{self.issuer}/authorize", **kwargs, **extra)
        return AuthRequest(url=url, state=state, nonce=nonce, code_verifier=verifier, params=extra)

    def _auth(self, data: dict) -> tuple[dict, dict]:
        headers = {}
        if self.auth_method == "client_secret_basic":
            raw = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif self.auth_method == "client_secret_post":
            data = dict(data, client_id=self.client_id, client_secret=self.client_secret)
        elif self.auth_method == "none":
            data = dict(data, client_id=self.client_id)
        return data, headers

    def token_request(self, data: dict):
        data, headers = self._auth(data)
        return self.http.post("/token", data=data, headers=headers)

    def exchange(self, code: str, request: AuthRequest | None = None, **extra):
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if request is not None and request.code_verifier:
            data["code_verifier"] = request.code_verifier
        data.update(extra)
        return self.token_request(data)

    def refresh(self, refresh_token: str, **extra):
        return self.token_request({"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(self.http.get("/jwks").get_json())

    def validate_id_token(self, id_token: str, nonce: str | None = None, access_token: str | None = None,
                          max_age: int | None = None) -> dict:
        decoded = jwt.decode(id_token, self.jwks(), algorithms=["RS256", "ES256"])
        claims = CodeIDToken(
            decoded.claims, decoded.header,
            options={"iss": {"essential": True, "value": self.issuer},
                     "aud": {"essential": True, "value": self.client_id}},
            params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token, "max_age": max_age},
        )
        claims.validate()
        return dict(claims)

    def userinfo(self, access_token: str, how: str = "header"):
        if how == "header":
            return self.http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
        if how == "post-header":
            return self.http.post("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
        return self.http.post("/userinfo", data={"access_token": access_token})


def authorize(browser: Browser, rp: RelyingParty, account=None, consent: bool = True, scope: str = "openid", **params):
    """Run an authorization request through login and consent as needed. Returns
    (AuthRequest, final response): a redirect to the client, or a hub page."""
    request = rp.authorization_request(scope=scope, **params)
    response = browser.go(request.url)
    if response.status_code == 200 and 'name="login"' in response.get_data(as_text=True) and account is not None:
        response = browser.login(response, account.phone, account.password)
    if response.status_code == 200 and "Allow access" in response.get_data(as_text=True) and consent:
        response = browser.approve(response)
    return request, response


def code_from(response, request: AuthRequest | None = None) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    params = query_of(response.location)
    assert "code" in params, params
    if request is not None:
        assert params.get("state") == request.state
    return params["code"]
