"""People: Account (status, profile claims, password hash), Identity (phone, email, username or upstream subject; released, never deleted), OtpChallenge, AuditEvent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.dbutil import identifier
from app.extensions import db
from app.security import utcnow

ACCOUNT_STATUSES = ("active", "merged", "closed", "locked")
IDENTITY_KINDS = ("phone", "email", "username", "upstream")

#: Standard profile claims (OIDC Core 5.1) kept as columns on the account.
PROFILE_CLAIMS = (
    "name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
    "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale",
)


class Account(db.Model):
    """One natural person. ``id`` is internal and never leaves the hub: clients see subjects."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    password_hash: Mapped[str | None] = mapped_column(String(255))

    name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    nickname: Mapped[str | None] = mapped_column(String(100))
    preferred_username: Mapped[str | None] = mapped_column(String(100))
    profile: Mapped[str | None] = mapped_column(String(500))
    picture: Mapped[str | None] = mapped_column(String(500))
    website: Mapped[str | None] = mapped_column(String(500))
    gender: Mapped[str | None] = mapped_column(String(32))
    birthdate: Mapped[str | None] = mapped_column(String(10))
    zoneinfo: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    #: OIDC Core 5.1.1 address claim (formatted, street_address, locality, region, postal_code, country).
    address: Mapped[dict | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: Last successful login (any identity); an account unused for TESSERA_DORMANT_DAYS is dormant.
    last_login_at: Mapped[datetime | None] = mapped_column()
    #: Deregistration: when the account was closed. Its identities are released after the
    #: cooling-off period; its subjects are never reused.
    closed_at: Mapped[datetime | None] = mapped_column()

    identities: Mapped[list[Identity]] = relationship(
        back_populates="account", primaryjoin="and_(Account.id == Identity.account_id, Identity.released_at.is_(None))",
        viewonly=True, lazy="select",
    )

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def identity(self, kind: str) -> Identity | None:
        """The account's primary live identity of a kind (verified first, then oldest)."""
        candidates = [i for i in self.identities if i.kind == kind]
        candidates.sort(key=lambda i: (not i.verified, i.id))
        return candidates[0] if candidates else None


class Identity(db.Model):
    """One way to log in to an account. ``(kind, namespace, value)`` is unique among live
    identities: ``namespace`` is empty for phones and emails, the tenant id for usernames and the
    upstream provider for upstream subjects. Released identities keep their row for the audit."""

    __tablename__ = "identities"
    __table_args__ = (
        Index(
            "uq_identities_live", "kind", "namespace", "value", unique=True,
            postgresql_where=text("released_at IS NULL"), sqlite_where=text("released_at IS NULL"),
        ),
        # Partial: only upstream identities of platforms with a unionid have one (most rows do not,
        # and a bulk import of a million records maintains this index for every identity row).
        Index("ix_identities_unionid", "namespace", "unionid",
              postgresql_where=text("unionid IS NOT NULL"), sqlite_where=text("unionid IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(identifier(16))
    namespace: Mapped[str] = mapped_column(identifier(64), default="")
    value: Mapped[str] = mapped_column(identifier(320))
    verified: Mapped[bool] = mapped_column(default=False)
    #: Upstream identities: the platform-wide id (e.g. WeChat unionid) next to the per-app subject
    #: kept in ``value``; lookups try it first when present.
    unionid: Mapped[str | None] = mapped_column(identifier(255))
    #: The tenant whose legacy system (import, sync API, lazy migration) added this identity; None:
    #: the person, an operator or an upstream login did. A legacy system releases or replaces
    #: only identities it added.
    legacy_tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    #: What to show the user for this identity (an upstream account's name or email).
    display: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    released_at: Mapped[datetime | None] = mapped_column()

    account: Mapped[Account] = relationship(back_populates="identities", foreign_keys=[account_id])


class OtpChallenge(db.Model):
    """A one-time code sent to a phone: 6 digits, stored hashed, short-lived, limited attempts,
    single use. ``uid`` is the public handle the pages refer to."""

    __tablename__ = "otp_challenges"
    __table_args__ = (Index("ix_otp_challenges_phone_created", "phone", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(43), unique=True)
    #: login | register | bind | rebind | link | merge | reauth | reset (a password reset)
    purpose: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(128))
    #: The account the code is for, when it is known at sending time (bind/rebind: the requester).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column()
    locked_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(db.Model):
    """Who did what, when, from where: identity changes, logins, consents, merges."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_account_at", "account_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    #: e.g. login.success, login.failure, identity.bound, identity.unbound, consent.granted
    kind: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    #: Who acted: the account itself, an operator ("operator:<name>"), a client, the system.
    actor: Mapped[str | None] = mapped_column(String(100))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
