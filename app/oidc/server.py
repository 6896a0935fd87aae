"""Authlib's authorization server, wired to Tessera's models.

Authlib does the protocol checks (client authentication, grant validation, PKCE, revocation,
introspection, bearer tokens); this module supplies the storage and extends Authlib where it stops:
hashed codes and tokens, single-use codes with revocation on reuse, refresh token rotation with
reuse detection, ID tokens with pairwise subjects and ``sid``, private_key_jwt with a replay guard.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from datetime import timedelta

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import (
    InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError, UnauthorizedClientError, grants,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode as _OpenIDCode
from authlib.oidc.core.grants.util import is_openid_scope
from flask import current_app
from joserfc.jwk import KeySet
from sqlalchemy import bindparam, insert, update

from app.budgets import Budget, BudgetSpent, Dimension, client_address
from app.caches import thaw
from app.dbutil import commit_if_begun
from app.extensions import db
from app.oidc.bearer import active_account_claims, find_access_token, find_token
from app.oidc.clients import get_client_by_pk, usable_client
from app.oidc.id_tokens import issue_id_token
from app.oidc.models import AuthorizationCode, Token, UsedAssertion
from app.oidc.subjects import subject_for
from app.security import new_secret, token_hash, utcnow

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


#: Failed client authentications at /token, /revoke and /introspect (every way a client
#: authenticates: secrets, private_key_jwt). Successes give their unit back, so a site's traffic
#: never spends it; a spent dimension refuses even the right credentials until its window ends.
CLIENT_AUTHENTICATIONS = Budget("client-auth", {
    "address": Dimension("TESSERA_CLIENT_AUTH_BUDGET_ADDRESS"),
    "client": Dimension("TESSERA_CLIENT_AUTH_BUDGET_CLIENT"),
}, spent_detail="too many failed client authentications, try again later")


def _claimed_client_id(request) -> str | None:
    """The client_id a request claims, before it is authenticated: from HTTP Basic, the form, or
    the (unverified) ``sub`` of a client assertion. Only a budget key, never trusted."""
    try:
        client_id, _ = extract_basic_authorization(request.headers)
    except ValueError:  # Basic credentials that are not UTF-8 name no client
        client_id = None
    client_id = client_id or request.payload.data.get("client_id")
    assertion = request.payload.data.get("client_assertion")
    if not client_id and isinstance(assertion, str) and assertion.count(".") == 2:
        try:
            claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
            client_id = claims.get("sub") if isinstance(claims, dict) else None
        except (ValueError, TypeError):
            client_id = None
    return client_id[:200] if isinstance(client_id, str) and client_id else None


class AuthorizationServer(FlaskAuthorizationServer):
    """Authlib's server, remembering the grant types registered (by oidc here, by features in
    their ``init_app``: the partner token exchange) for discovery's ``grant_types_supported``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grant_types: list[str] = []

    def register_grant(self, grant_cls, extensions=None):
        super().register_grant(grant_cls, extensions)
        if grant_cls.GRANT_TYPE not in self.grant_types:
            self.grant_types.append(grant_cls.GRANT_TYPE)

    def create_oauth2_request(self, request):
        # A paused request resumed from an interaction arrives as an OAuth2Request already.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def authenticate_client(self, request, methods, endpoint="token"):
        """Authlib's client authentication (RFC 6749 2.3), on the failed-authentication budget
        per client address and per claimed client_id; BudgetSpent (429) when it is spent. A
        success only reads the budget (the hot path of every backend); a failure is charged."""
        budget = {"address": client_address(), "client": _claimed_client_id(request)}
        try:
            CLIENT_AUTHENTICATIONS.check(**budget)
        except BudgetSpent as spent:
            current_app.logger.warning("client authentication refused (%s spent): client_id=%r address=%s",
                                       ",".join(spent.dimensions), budget["client"], budget["address"])
            raise
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            _charge_failure(budget)
            raise
        except ValueError as exc:
            # Authlib's Basic parser raises on a header of blanks, and on credentials that are not
            # UTF-8 (RFC 6749 2.3.1: they are form-encoded UTF-8): they name no client (a failure).
            current_app.logger.info("unreadable client credentials: %s", exc)
            _charge_failure(budget)
            raise InvalidClientError(status_code=401, description="the Basic credentials are malformed") from None


def _charge_failure(budget: dict) -> None:
    """One failed client authentication on the budget (the next check sees it spent)."""
    with contextlib.suppress(BudgetSpent):
        CLIENT_AUTHENTICATIONS.reserve(**budget)


def _query_client(client_id: str):
    if "\x00" in client_id:  # from Basic credentials: no stored client_id holds NUL (nor can PostgreSQL text)
        return None
    # A disabled client is unknown to every endpoint Authlib runs (authorize, token, revoke, introspect).
    return usable_client(client_id)


# New codes and tokens: Core INSERTs with bound parameters (one cached statement each); nothing in
# the request reads the new row back, so the ORM unit of work would be pure overhead.
_INSERT_TOKEN = insert(Token.__table__)
_INSERT_CODE = insert(AuthorizationCode.__table__)


# Codes and refresh tokens are claimed (marked used) by the statement that finds them: only an
# unused one of the authenticated client (and for refresh tokens, a live one) matches, and of two
# requests racing with the same value exactly one gets the row. Built once, executed with parameters.
_CLAIM_CODE = (
    update(AuthorizationCode)
    .where(AuthorizationCode.code_hash == bindparam("digest"), AuthorizationCode.client_id == bindparam("client"),
           AuthorizationCode.used_at.is_(None))
    .values(used_at=bindparam("claimed_at"))
    .returning(AuthorizationCode)
    .execution_options(synchronize_session=False)  # nothing loaded yet to keep in sync
)
_CLAIM_REFRESH_TOKEN = (
    update(Token)
    .where(Token.refresh_token_hash == bindparam("digest"), Token.client_id == bindparam("client"),
           Token.refresh_used_at.is_(None), Token.revoked_at.is_(None), Token.refresh_expires_at > bindparam("now"))
    .values(refresh_used_at=bindparam("claimed_at"))
    .returning(Token)
    .execution_options(synchronize_session=False)
)


def _save_token(token: dict, request) -> None:
    """Store a freshly generated token (its hashes only). The caller's route commits."""
    now = int(time.time())
    client, user = request.client, request.user
    code = getattr(request, "authorization_code", None)
    previous = getattr(request, "refresh_token", None)
    source = code or previous
    # The person's authentication the new token stands on: the code's, the refresh token's, or
    # (a grant trading one token for another, RFC 8693) ``request.subject_token``'s; a
    # client-credentials token has none.
    authn = source or getattr(request, "subject_token", None)
    refresh = token.get("refresh_token")
    db.session.execute(_INSERT_TOKEN, dict(
        client_id=client.id,
        account_id=user.id if user is not None else None,
        access_token_hash=token_hash(token["access_token"]),
        refresh_token_hash=token_hash(refresh) if refresh else None,
        family_id=previous.family_id if previous is not None else new_secret(24),
        code_id=code.id if code is not None else None,
        scope=token.get("scope", ""),
        claims=source.claims if source is not None else None,
        sid=source.sid if source is not None else None,
        auth_time=authn.auth_time if authn is not None else None,
        acr=authn.acr if authn is not None else None,
        amr=authn.amr if authn is not None else None,
        issued_at=now,
        expires_in=int(token["expires_in"]),
        refresh_expires_at=now + current_app.config["TESSERA_REFRESH_TOKEN_TTL"] if refresh else None,
    ))


def _opaque_token(*args, **kwargs) -> str:  # noqa: ARG001  (Authlib passes client, grant_type, user, scope)
    return new_secret(32)


def revoke_family(family_id: str) -> None:
    db.session.execute(
        update(Token).where(Token.family_id == family_id, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
    )


class PKCE(CodeChallenge):
    """RFC 7636 with S256 only (``plain`` refused), required for public clients at the
    authorization request already, not only at the token request."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            # RFC 7636 4.3: an absent method means "plain", which this server does not support.
            raise InvalidRequestError("code_challenge_method must be S256")
        if grant.request.client.is_public and not data.get("code_challenge"):
            raise InvalidRequestError("public clients must use PKCE (code_challenge with S256)")
        return super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class OpenIDCode(_OpenIDCode):
    """Adds the ID token to the token response. Prompt handling lives in ``authorization.py``,
    so Authlib's own prompt hook is not registered."""

    def exists_nonce(self, nonce, request):
        # OIDC Core 3.1.2.1: the nonce binds the ID token to the RP's session; the RP checks it.
        return False

    def __call__(self, grant):
        grant.register_hook("after_create_token_response", self.process_token)
        if is_openid_scope(grant.request.payload.scope):
            grant.register_hook("after_validate_authorization_request_payload", self.validate_openid_authorization_request)

    def process_token(self, grant, response):
        _, token, _ = response
        request = grant.request
        if not is_openid_scope(token.get("scope")) or request.user is None:
            return token
        source = getattr(request, "authorization_code", None) or request.refresh_token
        token["id_token"] = issue_id_token(
            client=request.client, account=request.user, scope=token["scope"],
            auth_time=source.auth_time, acr=source.acr, amr=source.amr, sid=source.sid,
            # OIDC Core 12.2: an ID token from a refresh carries no new nonce.
            nonce=source.nonce if isinstance(source, AuthorizationCode) else None,
            access_token=token.get("access_token"), claims_request=source.claims,
        )
        return token


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def validate_authorization_request(self):
        # OIDC Core 3.1.2.1: redirect_uri is REQUIRED (checked before anything is redirected).
        if not self.request.payload.redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri' in request.")
        redirect_uri = super().validate_authorization_request()
        mode = self.request.payload.data.get("response_mode")
        if mode and mode != "query":
            raise InvalidRequestError("response_mode must be 'query'", redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self):
        return new_secret(32)

    def save_authorization_code(self, code, request):
        auth = request.tessera_auth  # set by app.oidc.authorization before issuing
        data = request.payload.data
        db.session.execute(_INSERT_CODE, dict(
            code_hash=token_hash(code), client_id=request.client.id, account_id=request.user.id,
            redirect_uri=data["redirect_uri"], scope=request.scope or "", nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
            claims=auth.claims_request, sid=auth.sid, auth_time=auth.auth_time, acr=auth.acr, amr=auth.amr,
            expires_at=utcnow() + timedelta(seconds=current_app.config["TESSERA_CODE_TTL"]),
        ))

    def query_authorization_code(self, code, client):
        digest = token_hash(code)
        # Claim the code in the lookup: exactly one redemption can win, even when two race.
        row = db.session.scalar(_CLAIM_CODE, {"digest": digest, "client": client.id, "claimed_at": utcnow()})
        # The claim stands even if the rest of this request fails: a code is tried once only.
        db.session.commit()
        if row is None:
            used = db.session.scalar(db.select(AuthorizationCode).filter_by(code_hash=digest, client_id=client.id))
            if used is not None:
                # RFC 6749 4.1.2: a code used twice revokes the tokens issued from it.
                families = db.session.scalars(db.select(Token.family_id).filter_by(code_id=used.id)).all()
                for family in set(families):
                    revoke_family(family)
                db.session.commit()
            return None
        if row.expires_at <= utcnow():
            return None
        return row

    def delete_authorization_code(self, authorization_code):
        pass  # already marked used when it was claimed; the row stays for reuse detection

    def authenticate_user(self, authorization_code):
        return active_account_claims(authorization_code.account_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        """Claim the refresh token in the lookup itself: one ``UPDATE … RETURNING`` marks it used
        (rotation) if it is live and this client's, so exactly one of two racing requests wins. The
        token route rolls the claim back if the request fails later (scope, account)."""
        digest = token_hash(refresh_token)
        row = db.session.scalar(_CLAIM_REFRESH_TOKEN, {
            "digest": digest, "client": self.request.client.id, "now": int(time.time()), "claimed_at": utcnow()})
        if row is not None:
            return row
        used = db.session.scalar(db.select(Token).filter_by(refresh_token_hash=digest))
        if used is not None and used.refresh_used_at is not None and used.revoked_at is None:
            # Reuse of a rotated refresh token: someone holds a copy. Revoke the whole family.
            revoke_family(used.family_id)
            db.session.commit()
        return None

    def authenticate_user(self, refresh_token):
        return active_account_claims(refresh_token.account_id)

    def revoke_old_credential(self, refresh_token):
        pass  # claimed (marked used) by authenticate_refresh_token


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt client authentication (OIDC Core 9, RFC 7523)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        issuer = current_app.config["TESSERA_ISSUER"]
        return [issuer, f"{issuer}/token", f"{issuer}/revoke", f"{issuer}/introspect"]

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(thaw(client.jwks) or {"keys": []})  # joserfc wants plain dicts

    def validate_jti(self, claims, jti):
        key = token_hash(f"{claims['iss']}\x00{jti}")
        if db.session.scalar(db.select(UsedAssertion.id).filter_by(jti_hash=key)):
            return False
        db.session.add(UsedAssertion(jti_hash=key, expires_at=utcnow() + timedelta(seconds=int(claims["exp"] - time.time()) + 120)))
        db.session.flush()
        return True


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token, request):
        if token.presented_as == "refresh_token":
            # RFC 7009 2.1: revoking a refresh token also revokes the tokens of the same grant.
            revoke_family(token.family_id)
        else:
            db.session.execute(
                update(Token).where(Token.id == token.id, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
        db.session.commit()


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        # A client may introspect its own tokens; a resource server registered with the
        # "introspection" scope may introspect every token of the hub.
        return token.client_id == client.id or "introspection" in client.scope.split()

    def create_introspection_payload(self, token):
        # RFC 7662 2.2: unknown, foreign, expired or revoked tokens, and tokens of closed or
        # merged-away accounts, are all just inactive.
        client = get_client_by_pk(token.client_id) if token is not None else None
        if token is None or not token.is_active() or client is None or client.disabled:
            return {"active": False}
        access = token.presented_as == "access_token"
        payload = {
            "active": True,
            "scope": token.scope,
            "client_id": client.client_id,
            "token_type": "Bearer" if access else "refresh_token",
            "exp": token.get_expires_at() if access else token.refresh_expires_at,
            "iat": token.issued_at,
            "iss": current_app.config["TESSERA_ISSUER"],
            "aud": client.client_id,
        }
        if token.account_id is not None:
            payload["sub"] = subject_for(client, token.account_id)
            # RFC 9470 6.2: the authentication the token stands on, for a resource server to judge.
            payload.update({name: value for name in ("acr", "auth_time") if (value := getattr(token, name)) is not None})
        commit_if_begun()  # the first subject mapping of this (sector, account) may have been recorded
        return payload


def init_authorization_server(app, server: AuthorizationServer) -> None:
    ttl = app.config["TESSERA_ACCESS_TOKEN_TTL"]
    # Opaque 256-bit values from `secrets` (Authlib's default draws each character separately).
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = _opaque_token
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = _opaque_token
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {g: ttl for g in ("authorization_code", "refresh_token", "client_credentials")}
    server.init_app(app, query_client=_query_client, save_token=_save_token)
    server.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT())
    server.register_grant(AuthorizationCodeGrant, [PKCE(required=True), OpenIDCode(require_nonce=False)])
    server.register_grant(RefreshTokenGrant, [OpenIDCode(require_nonce=False)])
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
