"""Small security primitives shared by every domain: one way to hash a token, one clock."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC ``datetime`` (the database columns are ``TIMESTAMP WITHOUT TIME ZONE`` in UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def token_hash(value: str) -> str:
    """SHA-256 checksum under which a high-entropy secret (token, code, client secret, session
    cookie) is stored and looked up. The clear value is never stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hashes_match(value: str, expected_hash: str | None) -> bool:
    """Constant-time comparison of ``value`` with a stored ``token_hash``."""
    if not expected_hash or value is None:
        return False
    return hmac.compare_digest(token_hash(value), expected_hash)
