"""Password hashing: argon2id with the OWASP parameters (m=19 MiB, t=2, p=1), through a passlib
CryptContext that also verifies legacy formats (app.accounts.legacy_hashes: bcrypt, *-crypt, PBKDF2,
Django, scrypt, phpass, Drupal 7, LDAP SSHA, salted hex digests) and asks for a rehash when a hash
is not argon2id with the current parameters (``verify_and_update``). A new password the hub sets
(sign-up, a reset by the person or an operator, a change at /account) follows ``check_new_password``:
at least ``MIN_PASSWORD_LENGTH`` characters, not one of the common passwords shipped in
``app/accounts/data/common-passwords.txt`` (zxcvbn's list, MIT), not the person's own phone, email
or username — the last two compared case-insensitively, with no look-up outside the hub."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from functools import cache
from importlib.resources import files

import phonenumbers
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


_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
TOO_COMMON = "this password is one of the most common ones: choose another"
OWN_IDENTIFIER = "a password cannot be your phone number, email address or username"


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lowercase. Read on first use (not at import: a
    worker that never sets a password never holds it), and only the entries long enough to pass
    the length rule, since the shorter ones are refused anyway."""
    text = files("app.accounts").joinpath("data", "common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines()
                     if line and not line.startswith("#") and len(line) >= MIN_PASSWORD_LENGTH)


def _identifier_forms(identifiers: Iterable[str | None]) -> set[str]:
    """How a person may type their own identifiers: as stored (lowercase), a phone also without
    its "+" and as its national number."""
    forms = set()
    for value in identifiers:
        if not value:
            continue
        value = value.strip().lower()
        forms.add(value)
        if value.startswith("+"):
            forms.add(value[1:])
            try:
                forms.add(str(phonenumbers.parse(value).national_number))
            except phonenumbers.NumberParseException:
                pass
    return forms


def check_new_password(password: str, identifiers: Iterable[str | None] = ()) -> None:
    """The rules a password the hub sets must follow; InvalidInput says which one it breaks.
    ``identifiers``: the person's phone numbers (E.164), emails and usernames."""
    if not isinstance(password, str):
        raise InvalidInput("a password is a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    folded = password.strip().lower()
    if folded in common_passwords():
        raise InvalidInput(TOO_COMMON)
    own = _identifier_forms(identifiers)
    if folded in own or _PHONE_PUNCTUATION.sub("", folded) in own:  # "+1 (415) 555-0100" too
        raise InvalidInput(OWN_IDENTIFIER)


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
