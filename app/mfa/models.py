"""Second factors of an account: TotpFactor (its secret encrypted at rest, the last time step used),
RecoveryCode (stored hashed, single use), WebAuthnCredential (a passkey or security key) and
WebAuthnChallenge (a pending WebAuthn ceremony, single use), SmsSecondFactor (codes by SMS after the
password) and TrustedBrowser (a browser remembered after a second step)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String, Text
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


class WebAuthnCredential(db.Model):
    """A passkey or security key (WebAuthn): its credential id and COSE public key, the signature
    counter it last reported, and what the browser and authenticator said of it at registration."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    #: The authenticator's credential id (WebAuthn: at most 1023 bytes), unique across the hub.
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    #: The credential public key, a COSE_Key (RFC 9052 7) as the authenticator sent it.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: The signature counter of the last assertion (an unsigned 32-bit number; 0 when it keeps none).
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The user handle given at registration (random, the same for all of an account's credentials).
    user_handle: Mapped[bytes] = mapped_column(LargeBinary)
    #: The person's name for it ("YubiKey 5", "Phone").
    name: Mapped[str] = mapped_column(String(64))
    #: How the browser reached it ("usb", "nfc", "ble", "hybrid", "internal"): hints for later ceremonies.
    transports: Mapped[list | None] = mapped_column(JSON)
    #: The authenticator model (AAGUID) when it told; all zeros with attestation "none" on many.
    aaguid: Mapped[str | None] = mapped_column(String(36))
    #: "platform" (built into the device) or "cross-platform" (a security key, a phone over hybrid),
    #: as the browser reported it (not attested).
    attachment: Mapped[str | None] = mapped_column(String(16))
    #: The BE flag: the credential may be synced to other devices (a synced passkey).
    backup_eligible: Mapped[bool] = mapped_column(default=False)
    #: The BS flag of the last ceremony: the credential is synced now.
    backed_up: Mapped[bool] = mapped_column(default=False)
    #: A discoverable (resident) credential, usable without typing an identifier; None when the
    #: browser did not say (the credProps extension).
    discoverable: Mapped[bool | None] = mapped_column()
    #: Whether the authenticator verified the person (PIN, biometrics) at registration.
    user_verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()


class WebAuthnChallenge(db.Model):
    """A challenge handed to a browser for one WebAuthn ceremony, stored as its SHA-256 until it is
    used (deleted: never accepted twice) or it expires. ``account_id`` is the account the ceremony
    is for (registration, a second factor); None for a passwordless login."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SmsSecondFactor(db.Model):
    """The person asked for a code by SMS to their verified phone as the second step after their
    password. Only the choice is stored: the code goes to the account's verified phone of the day."""

    __tablename__ = "sms_second_factors"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    enabled_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrustedBrowser(db.Model):
    """A browser the person asked to remember after a second step ("remember this browser"): its
    cookie carries a random id whose hash is here. Until ``expires_at`` a login from it at a site
    that does not ask for more than one factor skips the second step; forgotten from
    /account/security, or all at once by an operator's reset."""

    __tablename__ = "trusted_browsers"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
