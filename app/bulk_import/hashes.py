"""Legacy password hash formats: what an imported account's hash may look like, and how it is
stored so that the hub's CryptContext (app.accounts.passwords) verifies it at the first login and
rehashes the password to argon2id (``verify_and_update``).

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

``normalize_legacy_hash(hash, fmt)`` is what the bulk importer, the sync API and the lazy
migration call for every incoming hash; it never hashes anything (it must stay cheap at a million
records per run).
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


def _b64encode(data: bytes) -> str:
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
        return f"{self.ident}{self.algorithm}${self.layout}${_b64encode(self.salt)}${self.checksum or ''}"

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


# --- normalization of imported hashes --------------------------------------------------------

_SALT_TOKEN, _PASSWORD_TOKEN = "{salt}", "{password}"


def _salted_layout(template: str) -> str:
    """``{salt}{password}`` → ``sp``; anything but those two tokens is refused."""
    layout, rest = "", template.strip()
    while rest:
        if rest.startswith(_SALT_TOKEN):
            layout, rest = layout + "s", rest[len(_SALT_TOKEN):]
        elif rest.startswith(_PASSWORD_TOKEN):
            layout, rest = layout + "p", rest[len(_PASSWORD_TOKEN):]
        else:
            raise InvalidInput(f"a salted layout is made of {{salt}} and {{password}}, not {template!r}")
    if "p" not in layout or len(layout) > 4:
        raise InvalidInput(f"a salted layout places {{password}} once or more, at most 4 parts: {template!r}")
    return layout


def _normalize_salted(value: str, algorithm: str, template: str) -> str:
    layout = _salted_layout(template)
    if "s" in layout:
        salt, sep, digest = value.rpartition("$")
        if not sep:
            raise InvalidInput(f"a salted {algorithm} hash is given as salt$hexdigest")
    else:
        salt, digest = "", value
    digest = digest.lower()
    if len(digest) != 2 * _DIGEST_SIZES[algorithm] or not _HEX.fullmatch(digest):
        raise InvalidInput(f"not a hex {algorithm} digest")
    return f"$tessera-salted${algorithm}${layout}${_b64encode(salt.encode('utf-8'))}${digest}"


#: Declared format (as an import record, a sync PUT or a webhook names it) → the passlib handler
#: that must recognize the hash, and a prefix to add when legacy tables drop it.
_FORMATS: dict[str, tuple[str, str]] = {
    "argon2": ("argon2", ""),
    "bcrypt": ("bcrypt", ""),
    "md5_crypt": ("md5_crypt", ""),
    "apr_md5_crypt": ("apr_md5_crypt", ""),
    "sha256_crypt": ("sha256_crypt", ""),
    "sha512_crypt": ("sha512_crypt", ""),
    "pbkdf2_sha1": ("pbkdf2_sha1", ""),
    "pbkdf2_sha256": ("pbkdf2_sha256", ""),
    "pbkdf2_sha512": ("pbkdf2_sha512", ""),
    "django_pbkdf2_sha256": ("django_pbkdf2_sha256", ""),
    "django_pbkdf2_sha1": ("django_pbkdf2_sha1", ""),
    "django_argon2": ("django_argon2", ""),
    "django_bcrypt_sha256": ("django_bcrypt_sha256", ""),
    "django_salted_sha1": ("django_salted_sha1", ""),
    "django_salted_md5": ("django_salted_md5", ""),
    "scrypt": ("scrypt", ""),
    "phpass": ("phpass", ""),
    "drupal7": ("drupal7", ""),
    "ssha": ("ldap_salted_sha1", "{SSHA}"),
    "ssha256": ("ldap_salted_sha256", "{SSHA256}"),
    "ssha512": ("ldap_salted_sha512", "{SSHA512}"),
    "smd5": ("ldap_salted_md5", "{SMD5}"),
    "sha": ("ldap_sha1", "{SHA}"),
    "ldap_md5": ("ldap_md5", "{MD5}"),
}
_ALIASES = {
    "md5-crypt": "md5_crypt", "md5crypt": "md5_crypt", "sha256-crypt": "sha256_crypt",
    "sha512-crypt": "sha512_crypt", "wordpress": "phpass", "phpbb3": "phpass", "drupal": "drupal7",
    "pbkdf2-sha256": "pbkdf2_sha256", "pbkdf2-sha512": "pbkdf2_sha512", "django": "django_pbkdf2_sha256",
    "ldap_salted_sha1": "ssha", "ldap_sha1": "sha", "sha1_base64": "sha", "argon2id": "argon2",
    "argon2i": "argon2", "blowfish": "bcrypt",
}
#: Unsalted hex digests are the salted layout with the password alone.
_UNSALTED = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


def _handler(name: str):
    from app.accounts.passwords import password_context

    return password_context.handler(name)


#: Checksum lengths passlib does not check itself (phpass: the hash64 of an MD5 digest).
_CHECKSUM_SIZES = {"phpass": 22}


def _parses(handler, value: str) -> bool:
    """Whether ``value`` is a whole hash of ``handler``: it parses, and carries a checksum of the
    handler's size. passlib also parses *configuration strings* — a hash's settings without its
    checksum (``$6$salt$``, ``pbkdf2_sha256$1000$salt$``, ``$2b$12$`` + salt) — and phpass hashes
    with a short checksum: no password ever verifies against those, so they are not hashes."""
    try:
        if not handler.identify(value):
            return False
        if isinstance(handler, uh.PrefixWrapper):  # django_argon2, …: the wrapped handler's hash
            value = handler.orig_prefix + value[len(handler.prefix):]
            handler = handler.wrapped
        parsed = handler.from_string(value)
    except (ValueError, TypeError):
        return False
    if parsed is None:
        return False
    checksum = getattr(parsed, "checksum", None)
    size = _CHECKSUM_SIZES.get(handler.name) or getattr(handler, "checksum_size", None)
    return bool(checksum) and (size is None or len(checksum) == size)


#: Hashes that passlib always accepts for these handlers, recognized without building the handler's
#: object (≈ 20 µs a hash, the bulk import's largest validation cost): a full match is the same
#: verdict as ``_parses``; anything else (other cost or rounds forms, configs without a checksum…)
#: still asks passlib. tests/bulk_import/test_records_fast.py checks every match passes ``_parses``.
_WELL_FORMED = {
    "bcrypt": re.compile(r"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}"),
    "md5_crypt": re.compile(r"\$1\$[./0-9A-Za-z]{1,8}\$[./0-9A-Za-z]{22}"),
    "sha256_crypt": re.compile(r"\$5\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{43}"),
    "sha512_crypt": re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"),
}
_HEX = re.compile(r"[0-9a-f]*")
_DIGEST_SIZES = {algorithm: hashlib.new(algorithm).digest_size for algorithm in SALTED_ALGORITHMS}


def normalize_legacy_hash(hash: str, fmt: str | None) -> str:  # noqa: A002 — the import field's name
    """The string to store in ``accounts.password_hash`` for a legacy ``hash`` in format ``fmt``.

    ``fmt`` is one of the names in docs/flows/legacy-passwords.md (``bcrypt``, ``md5_crypt``,
    ``django_pbkdf2_sha256``, ``phpass``, ``drupal7``, ``ssha`` …), ``salted_<md5|sha1|sha256|
    sha512>:<layout>`` for a hex digest of salt and password (``salted_md5:{salt}{password}``,
    the hash given as ``salt$hexdigest``), ``md5``/``sha1``/``sha256``/``sha512`` for an unsalted
    hex digest, or None to recognize a self-describing hash (``$2b$…``, ``$6$…``, ``{SSHA}…``).
    Raises InvalidInput when the hash is empty, not of that format, or malformed.
    """
    value = (hash or "").strip()
    if not value:
        raise InvalidInput("the password hash is empty")
    fmt = (fmt or "").strip()
    key = _ALIASES.get(fmt.lower(), fmt.lower())

    if key.startswith("salted_"):
        algorithm, sep, template = fmt[len("salted_"):].partition(":")
        algorithm = algorithm.lower()
        if algorithm not in SALTED_ALGORITHMS or not sep:
            raise InvalidInput(f"unknown salted format {fmt!r}: use salted_<md5|sha1|sha256|sha512>:<layout>")
        normalized = _normalize_salted(value, algorithm, template)
    elif key in _UNSALTED:
        normalized = _normalize_salted(value, _UNSALTED[key], _PASSWORD_TOKEN)
    elif key in _FORMATS:
        name, prefix = _FORMATS[key]
        if prefix and not value.upper().startswith(prefix):
            value = prefix + value
        if name == "bcrypt" and value.startswith("$2x$"):
            raise InvalidInput("$2x$ bcrypt hashes (the crypt_blowfish bug) cannot be verified safely")
        normalized = value
        well_formed = _WELL_FORMED.get(name)
        if not (well_formed and well_formed.fullmatch(normalized)) and not _parses(_handler(name), normalized):
            raise InvalidInput(f"not a valid {fmt} hash")
    elif not key:
        from app.accounts.passwords import password_context

        scheme = password_context.identify(value)
        if scheme is None or not _parses(_handler(scheme), value):
            raise InvalidInput("unrecognized password hash: declare its format")
        normalized = value
    else:
        raise InvalidInput(f"unknown password hash format {fmt!r}")

    if len(normalized) > MAX_STORED_HASH_LENGTH:
        raise InvalidInput(f"the password hash is longer than {MAX_STORED_HASH_LENGTH} characters")
    return normalized
