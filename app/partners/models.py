"""Partner data API state: data contracts, multi-valued addresses, provenance of shared values,
and the change log that feeds SET pushes and polling."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.security import utcnow


class DataContract(db.Model):
    """What one client may read and write of the people who agreed to share with it (seed 003:
    the system that needs the data asks for it field by field)."""

    __tablename__ = "partner_contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), unique=True)
    #: Claim names: profile claims, address, addresses, phone_number, email, attributes.<name> or attributes.*
    read_claims: Mapped[list] = mapped_column(JSON, default=list)
    write_claims: Mapped[list] = mapped_column(JSON, default=list)
    #: Push a claims-changed SET to the client's events endpoint when a readable claim changes.
    subscribe: Mapped[bool] = mapped_column(default=False)
    #: Hex salt of the phone hashes this client may look people up by (sha256(salt || E.164)).
    lookup_salt: Mapped[str] = mapped_column(String(64))
    #: The assurance level (an ``acr`` of ``app.oidc.assurance``) a person's authentication must
    #: reach for this client to write their shared claims (RFC 9470); None: any token may write.
    write_acr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccountAddress(db.Model):
    """One entry of a person's address book (multi-valued, shared between partners)."""

    __tablename__ = "account_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Public id of the entry (never the row id).
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: label, formatted, street_address, locality, region, postal_code, country (OIDC Core 5.1.1 + label)
    value: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Bumped on every change: the entry's ETag.
    version: Mapped[int] = mapped_column(default=1)
    #: Provenance: who wrote the current value ("partner" with client_id, or "self").
    source: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    written_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClaimProvenance(db.Model):
    """Who wrote the current value of a shared claim, and when. ``namespace`` is empty for profile
    claims and ``tenant:<id>`` for a tenant's custom attributes (claim ``attributes.<name>``)."""

    __tablename__ = "claim_provenance"
    __table_args__ = (UniqueConstraint("account_id", "namespace", "claim"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    namespace: Mapped[str] = mapped_column(String(32), default="")
    claim: Mapped[str] = mapped_column(String(100))
    #: partner | self | registration
    source: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ClaimChange(db.Model):
    """One change of shared claims of an account (any writer). The id is the polling cursor.
    ``tenant_id`` is set when the change is to that tenant's custom attributes only."""

    __tablename__ = "claim_changes"
    __table_args__ = (Index("ix_claim_changes_account_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    claims: Mapped[list] = mapped_column(JSON, default=list)
    #: The writing client (None: the person or the hub).
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
