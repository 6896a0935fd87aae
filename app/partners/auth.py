"""Bearer access tokens of partner servers (OAuth 2.0 client credentials, RFC 6750)."""

from __future__ import annotations

from functools import wraps

from flask import g, request

from app.extensions import db
from app.oidc.models import Token
from app.partners.problems import problem
from app.security import token_hash


def client_token_required(scope: str):
    """The request carries a live access token of a client with ``scope``: the client is ``g.client``."""
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() != "bearer ":
                return problem(401, "Authentication required", "send a bearer access token (client credentials)",
                               headers={"WWW-Authenticate": 'Bearer realm="tessera"'})
            token = db.session.scalar(db.select(Token).filter_by(access_token_hash=token_hash(auth[7:].strip())))
            if token is None or token.is_revoked() or token.is_expired():
                return problem(401, "Invalid token", "the access token is invalid, expired or revoked",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            if scope not in token.scope.split():
                return problem(403, "Insufficient scope", f"the access token lacks the {scope!r} scope",
                               headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
            g.client = token.get_client()
            return view(*args, **kwargs)
        return wrapper
    return decorator
