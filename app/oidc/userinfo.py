"""UserInfo (OIDC Core 5.3): the claims an access token's scope allows."""

from __future__ import annotations

from app.dbutil import commit_if_begun
from app.oidc.bearer import find_access_token
from app.oidc.claims import account_claims
from app.oidc.clients import get_client_by_pk


class BearerError(Exception):
    """RFC 6750 3.1 errors, answered with WWW-Authenticate."""

    def __init__(self, error: str, description: str, status: int):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def userinfo_for(access_token: str | None) -> dict:
    if not access_token:
        raise BearerError("invalid_request", "an access token is required", 401)
    token = find_access_token(access_token, with_claims=True)
    if token is None or token.is_revoked() or token.is_expired():
        raise BearerError("invalid_token", "the access token is invalid, expired or revoked", 401)
    if not token.has_scope("openid"):
        raise BearerError("insufficient_scope", "the access token lacks the openid scope", 403)
    if token.account is None or not token.account_active:
        raise BearerError("invalid_token", "the account of this token is no longer active", 401)
    client = get_client_by_pk(token.client_id)
    if client is None or client.disabled:
        raise BearerError("invalid_token", "the client of this token is disabled", 401)
    claims = account_claims(token.account, client, token.scope,
                            (token.claims or {}).get("userinfo"))
    commit_if_begun()  # the first subject mapping of this (sector, account) may have been recorded
    return claims
