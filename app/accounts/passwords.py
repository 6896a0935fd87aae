"""Password hashing: argon2id with the OWASP parameters (m=19 MiB, t=2, p=1), through a passlib
CryptContext that also verifies legacy formats (app.accounts.legacy_hashes: bcrypt, *-crypt, PBKDF2,
Django, scrypt, phpass, Drupal 7, LDAP SSHA, salted hex digests) and asks for a rehash when a hash
is not argon2id with the current parameters (``verify_and_update``). A new password the hub sets
(sign-up, an operator's reset) follows ``check_new_password``."""

from __future__ import annotations

import secrets

from passlib.context import CryptContext

from app.accounts.legacy_hashes import LEGACY_SCHEMES
from app.errors import InvalidInput

password_context = CryptContext(
    schemes=["argon2", *LEGACY_SCHEMES],
    default="argon2",
    argon2__type="ID",
    argon2__memory_cost=19 * 1024,
    argon2__time_cost=2,
    argon2__parallelism=1,
    deprecated="auto",
)

# A hash verified when the identifier is unknown, so that a failed login costs the same time
# whether or not the account exists (no user enumeration by timing). Made on first use, not at
# import: every worker process would otherwise pay for one argon2 hash (and 19 MiB) at start.
_dummy_hash: str | None = None


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = password_context.hash("tessera-dummy-password-for-timing")
    return _dummy_hash

MIN_PASSWORD_LENGTH = 8
#: The longest password the login forms accept (app.accounts.forms): a longer one could never be typed in.
MAX_PASSWORD_LENGTH = 1024
#: Generated passwords: no look-alikes (0/o, 1/l/i), so that one can be read out or typed from a note.
_GENERATED_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def check_new_password(password: str) -> None:
    """The rules a password the hub sets must follow; InvalidInput says which one it breaks."""
    if not isinstance(password, str):
        raise InvalidInput("a password is a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    """A random password of four groups of four (``k7fm-2qxp-…``, about 79 bits)."""
    return "-".join("".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(4)) for _ in range(4))


def hash_password(password: str) -> str:
    return password_context.hash(password)


def verify_password(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """Return (ok, new_hash). ``new_hash`` is set when the stored hash should be replaced."""
    if not stored_hash:
        password_context.verify(password, _dummy())
        return False, None
    try:
        ok, new_hash = password_context.verify_and_update(password, stored_hash)
    except (ValueError, TypeError):
        ok, new_hash = False, None
    if not ok and not stored_hash.startswith("$argon2"):
        # A legacy hash (salted MD5 takes microseconds) must not make a wrong password for an
        # existing account answer faster than for an unknown one. A right one pays the rehash.
        burn_verification_time(password)
    return ok, new_hash


def burn_verification_time(password: str) -> None:
    password_context.verify(password, _dummy())
