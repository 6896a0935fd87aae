"""Second factors of an account: TotpFactor (its secret encrypted at rest, the last time step used)
and RecoveryCode (stored hashed, single use)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.security import utcnow


class TotpFactor(db.Model):
    """An authenticator app (RFC 6238, 30 s, 6 digits, SHA-1 — what every app reads from a QR code).
    ``confirmed_at`` is null while enrolment waits for the first right code."""

    __tablename__ = "totp_factors"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    #: The base32 secret, encrypted with the hub's key (app.crypto).
    secret_encrypted: Mapped[str] = mapped_column(Text)
    #: The time step of the last code accepted: a code of that step or an earlier one is a replay.
    last_step: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class RecoveryCode(db.Model):
    """One of the codes shown once when generated; the keyed hash only. Used once."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column()
