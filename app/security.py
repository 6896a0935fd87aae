"""Small security primitives shared by every domain: one way to hash a token, one way to hash and
check a client secret, one clock."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import secrets
import string
from collections import Counter
from datetime import UTC, datetime

from flask import current_app


def utcnow() -> datetime:
    """Naive UTC ``datetime`` (the database columns are ``TIMESTAMP WITHOUT TIME ZONE`` in UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def token_hash(value: str) -> str:
    """SHA-256 checksum under which a high-entropy secret the hub generated (token, code, session
    cookie) is stored and looked up. The clear value is never stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


# --- client secrets ---------------------------------------------------------------------------------
# An operator may choose a client's secret (a client moved from another server keeps its own), so
# a secret at rest must not be a plain SHA-256 that a leaked row lets anyone brute-force offline.
# It is stored as HMAC-SHA-256, keyed with the pepper (TESSERA_SECRET_PEPPER, or a key derived from
# the secret key), of the secret's SHA-256:
#
#     "hmac$" + base64url(HMAC-SHA-256(pepper, SHA-256(secret)))      (48 characters)
#
# Hashing the SHA-256 rather than the secret lets migration 0012 rewrite the unsalted SHA-256
# hex digests stored before (64 hex characters, no "$") without knowing the secrets; a row still
# in that form is accepted and rewritten at its next successful authentication. One HMAC per
# check keeps client authentication, a hot path of the token endpoint, cheap.

CLIENT_SECRET_PREFIX = "hmac$"
#: What an operator-chosen client secret needs (a generated one has 256 bits).
MIN_CLIENT_SECRET_LENGTH = 32
MIN_CLIENT_SECRET_BITS = 128


@functools.lru_cache(maxsize=8)
def _pepper(configured: str | None, secret_key: str) -> bytes:
    if configured:
        return configured.encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), b"tessera-client-secret-pepper", hashlib.sha256).digest()


def _keyed(sha256_digest: bytes) -> str:
    pepper = _pepper(current_app.config.get("TESSERA_SECRET_PEPPER"), current_app.config["SECRET_KEY"])
    mac = hmac.new(pepper, sha256_digest, hashlib.sha256).digest()
    return CLIENT_SECRET_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def client_secret_hash(secret: str) -> str:
    """What is stored for a client secret (see above)."""
    return _keyed(hashlib.sha256(secret.encode("utf-8")).digest())


def is_legacy_secret_hash(stored: str | None) -> bool:
    """An unsalted SHA-256 hex digest, stored before revision 0012."""
    return bool(stored) and not stored.startswith(CLIENT_SECRET_PREFIX)


def upgrade_legacy_secret_hash(stored: str) -> str:
    """The keyed form of an unsalted SHA-256 hex digest (no clear secret needed)."""
    return _keyed(bytes.fromhex(stored))


def verify_client_secret(secret: str | None, stored: str | None) -> tuple[bool, str | None]:
    """(matches, the keyed hash to store instead when ``stored`` is of the legacy form), compared in
    constant time."""
    if not stored or secret is None:
        return False, None
    if is_legacy_secret_hash(stored):
        if hmac.compare_digest(token_hash(secret), stored):
            return True, client_secret_hash(secret)
        return False, None
    return hmac.compare_digest(client_secret_hash(secret), stored), None


_CHARACTER_CLASSES = ((string.ascii_lowercase, 26), (string.ascii_uppercase, 26), (string.digits, 10))


def _unpredicted_characters(secret: str) -> int:
    """How many characters of ``secret`` neither repeat what came before (a trigram already seen:
    a block written twice) nor continue a run (the same small step as the two before: ``abcd``,
    ``1234``, ``aaaa``)."""
    seen: set[str] = set()
    count = 0
    for i, char in enumerate(secret):
        trigram = secret[i - 2:i + 1] if i >= 2 else None
        step = ord(char) - ord(secret[i - 1]) if i >= 1 else None
        run = i >= 2 and abs(step) <= 3 and step == ord(secret[i - 1]) - ord(secret[i - 2])
        if not (run or trigram in seen):
            count += 1
        if trigram:
            seen.add(trigram)
    return count


def estimated_entropy_bits(secret: str) -> float:
    """A deliberately rough upper estimate of a secret's entropy: the number of its characters
    that are not predictable from the ones before (not a repeated trigram, not a run) times the
    lesser of log2(size of the character classes it uses) and the Shannon entropy of its
    characters. It catches the short, the repetitive (a block written twice included), runs and
    the small-alphabet; it cannot see that a long phrase is guessable, so operators should let the
    hub generate secrets."""
    if not secret:
        return 0.0
    pool = sum(size for chars, size in _CHARACTER_CLASSES if any(c in chars for c in secret))
    if any(not (c.isascii() and c.isalnum()) for c in secret):
        pool += 33  # printable ASCII punctuation and space; anything else counts no more
    n = len(secret)
    shannon = -sum(count / n * math.log2(count / n) for count in Counter(secret).values())
    return _unpredicted_characters(secret) * min(math.log2(pool), shannon)


def client_secret_weakness(secret: str) -> str | None:
    """Why an operator-chosen client secret is refused, or None when it is long and random enough."""
    bits = estimated_entropy_bits(secret)
    if len(secret) >= MIN_CLIENT_SECRET_LENGTH and bits >= MIN_CLIENT_SECRET_BITS:
        return None
    return (f"the client secret is too weak ({len(secret)} characters, about {int(bits)} bits of entropy): "
            f"a chosen secret needs at least {MIN_CLIENT_SECRET_LENGTH} random characters and "
            f"{MIN_CLIENT_SECRET_BITS} bits; leave it out to have a 256-bit secret generated")
