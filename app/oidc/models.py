"""Protocol state: clients, codes, tokens, consents, signing keys, subjects, hub sessions,
interactions. Every secret the hub generates (code, token, session cookie) is stored as a SHA-256
checksum (``app.security.token_hash``) and looked up by it; client secrets, which an operator may
choose, are stored keyed (``app.security.client_secret_hash``). The clear value exists only in the
response that hands it out."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.oidc.redirects import redirect_uri_matches
from app.security import utcnow, verify_client_secret
from app.tenants.models import Tenant

DEFAULT_CLIENT_SCOPE = "openid profile email phone address offline_access"


class ClientRules:
    """What Authlib asks a client (its ``ClientMixin``), answered from the registration's columns:
    shared by the ORM row and the cached snapshot ``app.oidc.clients.ClientInfo``."""

    __slots__ = ()

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def client_metadata(self) -> dict:
        return {"id_token_signed_response_alg": self.id_token_signed_response_alg}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core 3.1.2.1: redirect_uri is REQUIRED, so no default is ever assumed.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in dict.fromkeys(scope.split()) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uri_matches(registered, redirect_uri) for registered in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        """The current secret, or the one a rotation replaced until its grace period ends
        (``previous_secret_expires_at``); both compared in constant time, both always computed
        while a grace runs, so the answer's timing does not tell which one matched."""
        matches, upgraded = verify_client_secret(client_secret, self.secret_hash)
        grace_ends = self.previous_secret_expires_at
        if self.previous_secret_hash and grace_ends is not None and grace_ends > utcnow():
            previous, _ = verify_client_secret(client_secret, self.previous_secret_hash)
            matches = matches or previous
        if upgraded:
            # A hash from before revision 0012: the row (this object may be a cached snapshot) gets
            # the keyed form, unless it changed meanwhile.
            db.session.execute(
                update(Client).where(Client.client_id == self.client_id, Client.secret_hash == self.secret_hash)
                .values(secret_hash=upgraded).execution_options(synchronize_session=False))
            db.session.commit()
        return matches

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class Client(ClientRules, db.Model):
    __tablename__ = "clients"
    #: SQLite reuses the highest rowid after a delete; a deleted client's id must never come back
    #: (tokens, caches and logs name clients by it). PostgreSQL sequences never go back.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The client secret's keyed hash ("hmac$…", ``app.security.client_secret_hash``: one HMAC keeps
    #: client authentication cheap); an unsalted SHA-256 hex digest in rows from before revision
    #: 0012, rewritten at the next successful authentication. None for public clients and private_key_jwt.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    response_types: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(1000), default=DEFAULT_CLIENT_SCOPE)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    #: "pairwise" (default) or "public" (OIDC Core 8).
    subject_type: Mapped[str] = mapped_column(String(16), default="pairwise")
    #: The sector the pairwise subjects of this client are computed for (a host name).
    sector_identifier: Mapped[str] = mapped_column(String(255))
    sector_identifier_uri: Mapped[str | None] = mapped_column(String(500))
    trusted: Mapped[bool] = mapped_column(default=False)
    #: Public keys of a private_key_jwt client (a JWK Set).
    jwks: Mapped[dict | None] = mapped_column(JSON)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    initiate_login_uri: Mapped[str | None] = mapped_column(String(500))
    #: Partner clients logged in automatically right after a login here (overrides the tenant's list).
    login_chain: Mapped[list | None] = mapped_column(JSON)
    #: Registration 2 ``default_acr_values``: the lowest of them is the assurance level every
    #: login to this client must reach (``app.oidc.assurance``); None: no requirement.
    default_acr_values: Mapped[list | None] = mapped_column(JSON)
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    #: Where Security Event Tokens (account merged, …) are pushed (RFC 8935).
    events_endpoint: Mapped[str | None] = mapped_column(String(500))
    #: A disabled client is refused at every endpoint: no authorization, no token, and the tokens
    #: it holds stop working (``tessera clients disable``).
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The secret a rotation replaced (keyed hash), still accepted until ``previous_secret_expires_at``
    #: (``tessera clients rotate-secret --grace``); None when no grace runs.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class AuthorizationCode(db.Model):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    #: The ``claims`` request parameter (OIDC Core 5.5), kept for the ID token and userinfo.
    claims: Mapped[dict | None] = mapped_column(JSON)
    sid: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[int] = mapped_column()
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list | None] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()

    # --- authlib AuthorizationCodeMixin ------------------------------------------------------
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list | None:
        return self.amr


class TokenLifetime:
    """Expiry, revocation and rotation state of a token, from its columns: shared by the ORM row
    and the read paths' ``bearer.TokenRecord``."""

    __slots__ = ()

    def check_client(self, client) -> bool:  # Authlib: the token was issued to this client
        return self.client_id == client.id

    def get_expires_at(self) -> int:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return self.get_expires_at() < time.time()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_refresh_token_active(self) -> bool:
        # refresh_expires_at is set only on rows that carry a refresh token
        return self.revoked_at is None and self.refresh_used_at is None and (self.refresh_expires_at or 0) > time.time()


class Token(TokenLifetime, db.Model):
    """An access token and, optionally, its refresh token. Refresh tokens rotate: each refresh
    issues a new row in the same ``family_id`` and marks the presented one ``refresh_used_at``;
    presenting a used refresh token again revokes the whole family (reuse detection)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(43), index=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("authorization_codes.id", ondelete="SET NULL"), index=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    claims: Mapped[dict | None] = mapped_column(JSON)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    auth_time: Mapped[int | None] = mapped_column()
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list | None] = mapped_column(JSON)
    issued_at: Mapped[int] = mapped_column()
    expires_in: Mapped[int] = mapped_column()
    refresh_expires_at: Mapped[int | None] = mapped_column()
    refresh_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    # --- authlib TokenMixin ------------------------------------------------------------------
    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in


class Consent(db.Model):
    """Remembered consent of an account for a client: the scopes it approved."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("account_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SigningKey(db.Model):
    """A signing key. States: ``next`` (published, not yet used) → ``current`` (signs) →
    ``retired`` (published until ``TESSERA_KEY_RETIRED_TTL`` after retirement, or until
    ``published_until`` when that is sooner, then dropped from the JWKS). The private JWK is
    encrypted at rest with a key derived from the secret key."""

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_state_alg", "state", "alg"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict] = mapped_column(JSON)
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()
    #: Set by ``tessera keys retire``: the retired key leaves the JWKS then, if sooner than
    #: ``retired_at`` + ``TESSERA_KEY_RETIRED_TTL``.
    published_until: Mapped[datetime | None] = mapped_column()


class SubjectMapping(db.Model):
    """The ``sub`` an account has in a sector. Kept forever, so that every subject a client ever
    saw can be listed and resolved (also after merges, through alias rows)."""

    __tablename__ = "subject_mappings"
    __table_args__ = (
        UniqueConstraint("sector", "sub"),
        Index("ix_subject_mappings_sector_account", "sector", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sector: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    sub: Mapped[str] = mapped_column(String(64))
    #: False for the account's own subject in the sector; True for subjects of absorbed accounts.
    alias: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SSOSession(db.Model):
    """The hub session. The browser holds a random cookie value; the row holds its checksum.
    ``sid`` is the public session id that goes into ID tokens and logout tokens."""

    __tablename__ = "sso_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    auth_time: Mapped[int] = mapped_column()
    amr: Mapped[list] = mapped_column(JSON, default=list)
    acr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()


class SessionClient(db.Model):
    """A client the hub session was used with (for logout fan-out)."""

    __tablename__ = "sso_session_clients"
    __table_args__ = (UniqueConstraint("session_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_sessions.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Interaction(db.Model):
    """A paused authorization request waiting for the user (login or consent). The protocol
    code stores the request here and hands the browser to the interaction pages, which resume
    it by id when done."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(43), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    #: The authorization request parameters, as received.
    params: Mapped[dict] = mapped_column(JSON)
    #: What the user must do: "login" or "consent".
    prompt: Mapped[str] = mapped_column(String(16))
    #: Set when the user logged in during this interaction (so max_age/prompt=login are satisfied).
    login_completed_at: Mapped[int | None] = mapped_column()
    consent_given: Mapped[bool] = mapped_column(default=False)
    #: A login that passed its first factor and waits for the second (``app.mfa``): the account and
    #: the methods used so far. Null otherwise.
    pending_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    pending_amr: Mapped[list | None] = mapped_column(JSON)
    #: Set once the login chain (partners logged in right after this login) has run.
    chain_done: Mapped[bool] = mapped_column(default=False)
    #: Checksum of the browser id kept in the signed Flask session: only the browser that started
    #: the interaction can complete or resume it.
    browser_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()

    client: Mapped[Client] = relationship(lazy="joined")


class UsedAssertion(db.Model):
    """``jti`` values of client assertions already accepted (RFC 7523 3: one use only)."""

    __tablename__ = "used_assertions"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginChain(db.Model):
    """A walk through partner sites' ``initiate_login_uri`` right after a login (top-level
    redirects; each partner signs in with prompt=none and hands the browser back)."""

    __tablename__ = "login_chains"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(43), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    interaction_uid: Mapped[str] = mapped_column(String(43))
    #: client_ids still to visit, in order.
    remaining: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
