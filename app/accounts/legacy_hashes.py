"""Legacy password hash handlers for the hub's CryptContext (app.accounts.passwords), next to the
passwords they verify: an imported account's legacy hash is verified at its first login and the
password rehashed to argon2id (``verify_and_update``).

passlib's own handlers cover almost everything. Written here are only the missing ones:

- ``bcrypt``: passlib's, with the 72-byte truncation every bcrypt implementation had before
  the ``bcrypt`` package began refusing longer passwords.
- ``drupal7``: Drupal 7's ``$S$`` hashes (phpass's construction with SHA-512, truncated to 55
  characters), and ``U$S$``, a Drupal 6 MD5 hash that Drupal 7 re-wrapped.
- ``tessera_salted``: a salted (or unsalted) MD5 / SHA-1 / SHA-256 / SHA-512 hex digest in a
  configurable layout such as ``md5(salt + password)``. Legacy tables keep the salt in a column of
  its own, so the import format is ``salt$hexdigest`` and the stored, self-describing form is
  ``$tessera-salted$<algorithm>$<layout>$<salt, base64url>$<hexdigest>``, the layout being the
  order of salt (``s``) and password (``p``): ``sp`` is md5(salt + password).

How an incoming hash of a declared format is checked and stored is app/bulk_import/hashes.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from hashlib import md5, sha512

import passlib.hash
import passlib.utils.handlers as uh
from passlib.handlers.phpass import phpass
from passlib.utils.binary import h64

from app.errors import InvalidInput

MAX_STORED_HASH_LENGTH = 255  # accounts.password_hash is VARCHAR(255)


class bcrypt(passlib.hash.bcrypt):  # noqa: N801
    """passlib's bcrypt, verifying the first 72 bytes of a longer password as every legacy
    bcrypt did (the ``bcrypt`` package raises on longer passwords since 5.0)."""

    @classmethod
    def _norm_digest_args(cls, secret, ident, new=False):
        secret, ident = super()._norm_digest_args(secret, ident, new=new)
        return secret[:72], ident


class drupal7(phpass):  # noqa: N801 — passlib handler names are lowercase
    """Drupal 7 (``includes/password.inc``): ``$S$`` + log2(rounds) + 8-character salt + the
    hash64 of SHA-512 iterated over (digest + password), the whole string cut at 55 characters.
    ``U$S$`` is a Drupal 6 hash (md5 hex of the password) that Drupal 7 hashed again."""

    name = "drupal7"
    default_ident = "$S$"
    ident_values = ("$S$", "U$S$")
    ident_aliases = {"S": "$S$"}
    checksum_size = 43  # 55 - len("$S$") - 1 rounds character - 8 salt characters
    default_rounds = 15  # DRUPAL_HASH_COUNT

    def _calc_checksum(self, secret):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if self.ident == "U$S$":
            secret = md5(secret).hexdigest().encode("ascii")
        result = sha512(self.salt.encode("ascii") + secret).digest()
        for _ in range(1 << self.rounds):
            result = sha512(result + secret).digest()
        return h64.encode_bytes(result).decode("ascii")[: self.checksum_size]


SALTED_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
_SALTED_RE = re.compile(r"^\$tessera-salted\$(md5|sha1|sha256|sha512)\$([sp]{1,4})\$([A-Za-z0-9_-]*)\$([0-9a-f]+)$")


def salt_b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class tessera_salted(uh.GenericHandler):  # noqa: N801
    """A hex digest of salt and password concatenated in a layout (verify only: the hub never
    makes these, a successful login replaces them with argon2id)."""

    name = "tessera_salted"
    ident = "$tessera-salted$"
    setting_kwds = ()
    checksum_chars = uh.LOWER_HEX_CHARS

    def __init__(self, algorithm: str = "md5", layout: str = "sp", salt: bytes = b"", **kwds):
        self.algorithm = algorithm
        self.layout = layout
        self.salt = salt
        super().__init__(**kwds)

    @classmethod
    def from_string(cls, hash, **context):
        if isinstance(hash, bytes):
            hash = hash.decode("ascii")
        match = _SALTED_RE.match(hash or "")
        if match is None:
            raise ValueError("not a valid tessera_salted hash")
        algorithm, layout, salt, digest = match.groups()
        if "p" not in layout or (salt and "s" not in layout):
            raise ValueError("tessera_salted: the layout must place the password (and a salt, if any)")
        if len(digest) != 2 * hashlib.new(algorithm).digest_size:
            raise ValueError(f"tessera_salted: not a {algorithm} digest")
        try:
            salt_bytes = _b64decode(salt)
        except (binascii.Error, ValueError):
            raise ValueError("tessera_salted: the salt is not base64url") from None
        return cls(algorithm=algorithm, layout=layout, salt=salt_bytes, checksum=digest)

    def to_string(self):
        return f"{self.ident}{self.algorithm}${self.layout}${salt_b64encode(self.salt)}${self.checksum or ''}"

    def _calc_checksum(self, secret):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        parts = {"s": self.salt, "p": secret}
        return hashlib.new(self.algorithm, b"".join(parts[c] for c in self.layout)).hexdigest()

    @classmethod
    def hash(cls, secret, **kwds):
        raise NotImplementedError("tessera_salted hashes are verified, never made")


#: The CryptContext's schemes after its default (argon2), in identification order: each is
#: recognized by a unique prefix, so the order only matters for speed (commonest first).
LEGACY_SCHEMES = (
    bcrypt,
    passlib.hash.phpass,
    drupal7,
    "django_pbkdf2_sha256",
    "django_pbkdf2_sha1",
    "django_argon2",
    "django_bcrypt_sha256",
    "django_salted_sha1",
    "django_salted_md5",
    "pbkdf2_sha256",
    "pbkdf2_sha512",
    "pbkdf2_sha1",
    "scrypt",
    "sha512_crypt",
    "sha256_crypt",
    "md5_crypt",
    "apr_md5_crypt",
    "ldap_salted_sha1",
    "ldap_salted_sha256",
    "ldap_salted_sha512",
    "ldap_salted_md5",
    "ldap_sha1",
    "ldap_md5",
    tessera_salted,
)
