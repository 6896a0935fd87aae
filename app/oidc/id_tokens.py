"""ID tokens (OIDC Core 2, 3.1.3.6) signed with the current key of the client's algorithm."""

from __future__ import annotations

import base64
import hashlib
import time

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.accounts.models import Account
from app.oidc.claims import account_claims
from app.oidc.keys import public_jwks, sign_for_client
from app.oidc.models import Client


def half_hash(value: str) -> str:
    """at_hash / c_hash (OIDC Core 3.1.3.6): left half of SHA-256 for RS256 and ES256."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    *, client: Client, account: Account, scope: str, auth_time: int | None, acr: str | None,
    amr: list | None, sid: str | None, nonce: str | None = None, access_token: str | None = None,
    claims_request: dict | None = None,
) -> str:
    now = int(time.time())
    claims = account_claims(account, client, scope, (claims_request or {}).get("id_token"))
    claims.update({
        "iss": current_app.config["TESSERA_ISSUER"],
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now,
        "exp": now + current_app.config["TESSERA_ID_TOKEN_TTL"],
    })
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if nonce:
        claims["nonce"] = nonce
    if acr:
        claims["acr"] = acr
    if amr:
        claims["amr"] = amr
    if sid:
        claims["sid"] = sid
    if access_token:
        claims["at_hash"] = half_hash(access_token)
    return sign_for_client(client, claims)


def decode_id_token_hint(token: str) -> dict | None:
    """Claims of an ID token this hub issued (signature checked; expiry ignored, as Core 3.1.2.1
    allows an expired hint), or None if it is not one of ours."""
    try:
        decoded = jwt.decode(token, KeySet.import_key_set(public_jwks()), algorithms=["RS256", "ES256"])
    except (JoseError, ValueError, TypeError):
        return None
    if decoded.claims.get("iss") != current_app.config["TESSERA_ISSUER"]:
        return None
    return decoded.claims
