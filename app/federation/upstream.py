"""The authorization-code round trip to an upstream: the request, the code exchange, the ID token,
the userinfo and the claim mapping that turns what the upstream sent into an ``UpstreamUser``.

The authorization request carries PKCE S256, a state and, for OpenID Connect, a nonce.

Nothing the upstream sends is trusted unchecked: an ID token is signed by the upstream's published
keys (never "none" or HMAC) and names the issuer, this hub as audience and the nonce sent; the
userinfo's subject must be the ID token's; only ``KEPT_CLAIMS`` are kept.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import quote_plus

from authlib.common.urls import add_params_to_uri
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.crypto import decrypt_json
from app.errors import TesseraError
from app.federation.models import UpstreamProvider
from app.federation.providers import KEPT_CLAIMS, callback_uri
from app.net import fetch
from app.security import new_secret

#: Signature algorithms accepted on upstream ID tokens ("none" and HMAC never: OIDC Core 10.1).
ID_TOKEN_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
#: Seconds of clock skew tolerated on upstream ID tokens.
CLOCK_SKEW = 60


class UpstreamError(TesseraError):
    """The upstream answered an error, or something it sent cannot be trusted."""

    status = 502
    title = "Upstream login failed"


@dataclass
class UpstreamRequest:
    """An authorization request sent to an upstream; ``state`` names it when the browser returns."""

    url: str
    state: str
    nonce: str | None
    code_verifier: str


def authorization_request(provider: UpstreamProvider) -> UpstreamRequest:
    """RFC 6749 4.1.1 with PKCE S256 (RFC 7636 4.2), a state and, for OpenID Connect, a nonce."""
    state, verifier = new_secret(24), new_secret(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = [("response_type", "code"), ("client_id", provider.client_id),
              ("redirect_uri", callback_uri(provider))]
    if provider.scope:
        params.append(("scope", provider.scope))
    params += [("state", state), ("code_challenge", challenge), ("code_challenge_method", "S256")]
    nonce = None
    if provider.kind == "oidc":
        nonce = new_secret(24)
        params.append(("nonce", nonce))
    return UpstreamRequest(add_params_to_uri(provider.authorization_endpoint, params), state, nonce, verifier)


@dataclass
class UpstreamUser:
    """Who the upstream says logged in, after the claim mapping."""

    subject: str
    unionid: str | None
    claims: dict


def _json(response, what: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(f"the upstream's {what} answered HTTP {response.status_code} without a JSON object")
    return data


def _exchange_code(provider: UpstreamProvider, code: str, code_verifier: str) -> dict:
    secret = decrypt_json(provider.client_secret_encrypted) if provider.client_secret_encrypted else None
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_uri(provider),
            "code_verifier": code_verifier}
    kwargs = {}
    if secret is None:
        data["client_id"] = provider.client_id
    else:
        # RFC 6749 2.3.1: client_secret_basic, both parts form-encoded first.
        kwargs["auth"] = (quote_plus(provider.client_id), quote_plus(secret))
    response = fetch("POST", provider.token_endpoint, data=data, headers={"Accept": "application/json"}, **kwargs)
    token = _json(response, "token endpoint")
    if response.status_code != 200 or "error" in token or token.get("errcode"):  # WeChat: errors with HTTP 200
        raise UpstreamError(f"the upstream refused the code: {token.get('error') or token.get('errmsg') or response.status_code}"
                            + (f" ({token['error_description']})" if token.get("error_description") else ""))
    if not token.get("access_token"):
        raise UpstreamError("the upstream's token response has no access_token")
    return token


def _validate_id_token(provider: UpstreamProvider, id_token: str, nonce: str | None) -> dict:
    """OIDC Core 3.1.3.7: signature by the upstream's published keys, iss, aud (and azp), exp,
    iat, nonce."""
    jwks = _json(fetch("GET", provider.jwks_uri, headers={"Accept": "application/json"}), "jwks_uri")
    try:
        key_set = KeySet.import_key_set(jwks)
        token = jwt.decode(id_token, key_set, algorithms=ID_TOKEN_ALGS)
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW,
            iss={"essential": True, "value": provider.issuer},
            sub={"essential": True},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise UpstreamError(f"the upstream's ID token is not valid: {exc}") from None
    claims = token.claims
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise UpstreamError("the upstream's ID token is meant for another party (azp)")
    return claims


def _userinfo(provider: UpstreamProvider, access_token: str) -> dict:
    response = fetch("GET", provider.userinfo_endpoint,
                     headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
    info = _json(response, "userinfo endpoint")
    if response.status_code != 200 or info.get("errcode"):  # WeChat answers errors with HTTP 200
        raise UpstreamError(f"the upstream's userinfo endpoint refused: {info.get('error') or info.get('errmsg') or response.status_code}")
    return info


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _mapped_claims(provider: UpstreamProvider, raw: dict) -> dict:
    claims = {k: v for k, v in raw.items() if k in KEPT_CLAIMS}
    for upstream, ours in (provider.claim_mapping or {}).items():
        if raw.get(upstream) not in (None, ""):
            claims[ours] = raw[upstream]
    for flag in ("email_verified", "phone_number_verified"):
        if flag in claims:
            claims[flag] = _truthy(claims[flag])
    return {k: v for k, v in claims.items() if isinstance(v, (str, bool, int))}


def finish_upstream_login(provider: UpstreamProvider, code: str, pending: UpstreamRequest) -> UpstreamUser:
    """Exchange the code and find out who logged in. Raises UpstreamError (or OutboundError when
    an endpoint is not reachable or not allowed)."""
    token = _exchange_code(provider, code, pending.code_verifier)
    raw: dict = {}
    if provider.kind == "oidc":
        if not token.get("id_token"):
            raise UpstreamError("the upstream's token response has no ID token")
        raw.update(_validate_id_token(provider, token["id_token"], pending.nonce))
    if provider.userinfo_endpoint:
        info = _userinfo(provider, token["access_token"])
        if provider.kind == "oidc" and info.get("sub") != raw["sub"]:
            # OIDC Core 5.3.2: the UserInfo sub must be the ID token's.
            raise UpstreamError("the upstream's userinfo is about another subject")
        raw.update(info)
    claims = _mapped_claims(provider, raw)
    subject = str(claims.pop("sub", "") or "")
    unionid = str(claims.pop("unionid", "") or "") or None
    if not subject:
        raise UpstreamError("the upstream did not say who logged in (no subject)")
    if len(subject) > 255 or (unionid and len(unionid) > 255):
        raise UpstreamError("the upstream's subject is too long")
    return UpstreamUser(subject=subject, unionid=unionid, claims=claims)
