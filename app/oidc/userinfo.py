"""UserInfo (OIDC Core 5.3): the claims an access token's scope allows."""

from __future__ import annotations

from app.extensions import db
from app.oidc.claims import account_claims
from app.oidc.models import Token
from app.security import token_hash


class BearerError(Exception):
    """RFC 6750 3.1 errors, answered with WWW-Authenticate."""

    def __init__(self, error: str, description: str, status: int):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def userinfo_for(access_token: str | None) -> dict:
    if not access_token:
        raise BearerError("invalid_request", "an access token is required", 401)
    token = db.session.scalar(db.select(Token).filter_by(access_token_hash=token_hash(access_token)))
    if token is None or token.is_revoked() or token.is_expired():
        raise BearerError("invalid_token", "the access token is invalid, expired or revoked", 401)
    if "openid" not in token.scope.split():
        raise BearerError("insufficient_scope", "the access token lacks the openid scope", 403)
    account = token.get_user()
    if account is None:
        raise BearerError("invalid_token", "the account of this token is no longer active", 401)
    claims = account_claims(account, token.get_client(), token.scope, (token.claims or {}).get("userinfo"))
    db.session.commit()  # the subject mapping may have been recorded
    return claims
