"""Bearer access tokens of partner servers (OAuth 2.0 client credentials, RFC 6750; or RFC 8693
Token Exchange on one person's behalf), and the per-client rate limit of the partner API."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from app.extensions import limiter
from app.oidc.assurance import level
from app.oidc.bearer import find_access_token
from app.oidc.clients import get_client_by_pk
from app.problems import problem


def _rate_limit() -> str:
    return current_app.config["TESSERA_PARTNER_RATE_LIMIT"]


def _client_key() -> str:
    return f"partner:{g.client.client_id}"


def client_token_required(scope: str, rate_limit=_rate_limit):
    """The request carries a live access token with ``scope``: its client is ``g.client``,
    ``g.token_account_id`` the person a token obtained on someone's behalf is bound to (else None)
    and ``g.token_level`` the assurance level of that person's authentication (0 for a token of no
    person: client credentials). Then the client's rate limit applies (flask-limiter, keyed by
    client id)."""
    def decorator(view):
        limited = limiter.limit(rate_limit, key_func=_client_key)(view)

        @wraps(view)
        def wrapper(*args, **kwargs):
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() != "bearer ":
                return problem(401, "Authentication required", "send a bearer access token (client credentials)",
                               headers={"WWW-Authenticate": 'Bearer realm="tessera"'}, reason="token_missing")
            token = find_access_token(auth[7:].strip())
            client = get_client_by_pk(token.client_id) if token is not None else None
            if token is None or not token.is_active() or client is None or client.disabled:
                return problem(401, "Invalid token", "the access token is invalid, expired or revoked",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, reason="token_invalid")
            if not token.has_scope(scope):
                return problem(403, "Insufficient scope", f"the access token lacks the {scope!r} scope",
                               headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
                               reason="insufficient_scope")
            g.client = client
            g.token_account_id = token.account_id
            g.token_level = level(token.acr) if token.account_id is not None else 0
            return limited(*args, **kwargs)
        return wrapper
    return decorator
