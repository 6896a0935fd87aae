"""Upstream identity providers (UpstreamProvider, its client secret encrypted) and PendingUpstreamLogin (an upstream login waiting for the person to create or link an account)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.security import utcnow

MATCHING_MODES = ("never", "verified_phone", "verified_email")


class UpstreamProvider(db.Model):
    """An upstream IdP configured by an operator (``tessera upstreams create``)."""

    __tablename__ = "upstream_providers"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: "oidc" (configured by discovery) or "oauth2" (endpoints + userinfo + claim mapping).
    kind: Mapped[str] = mapped_column(String(16))
    issuer: Mapped[str | None] = mapped_column(String(500))
    authorization_endpoint: Mapped[str] = mapped_column(String(500))
    token_endpoint: Mapped[str] = mapped_column(String(500))
    userinfo_endpoint: Mapped[str | None] = mapped_column(String(500))
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    #: Encrypted at rest (app.crypto): the hub must send it to the upstream.
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(500), default="openid profile email phone")
    #: Upstream claim names → ours, e.g. {"sub": "openid", "unionid": "unionid", "name": "nickname"}.
    claim_mapping: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Providers of one platform share their unionid space (WeChat apps of one developer account).
    platform: Mapped[str | None] = mapped_column(String(64))
    #: How a first login may find an existing account: never | verified_phone | verified_email.
    matching_mode: Mapped[str] = mapped_column(String(16), default="never")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingUpstreamLogin(db.Model):
    """An upstream identity that logged in but is linked to no account yet: the user chooses to
    create an account or to link it to an existing one (with a fresh proof)."""

    __tablename__ = "pending_upstream_logins"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(43), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("upstream_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    unionid: Mapped[str | None] = mapped_column(String(255))
    #: The upstream's claims after mapping (name, email, email_verified, phone_number, ...).
    claims: Mapped[dict] = mapped_column(JSON, default=dict)
    interaction_uid: Mapped[str | None] = mapped_column(String(43))
    browser_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
