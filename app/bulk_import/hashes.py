"""Normalization of imported legacy password hashes: ``normalize_legacy_hash(hash, fmt)`` is what
the bulk importer, the sync API and the lazy migration call for every incoming hash; it checks the
hash is of the declared format and returns the self-describing string the hub's CryptContext
verifies (the handlers are app/accounts/legacy_hashes.py). It never hashes anything (it must stay
cheap at a million records per run).
"""

from __future__ import annotations

import hashlib
import re

import passlib.utils.handlers as uh

from app.accounts.legacy_hashes import MAX_STORED_HASH_LENGTH, SALTED_ALGORITHMS, salt_b64encode
from app.accounts.passwords import password_context
from app.errors import InvalidInput

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
    return f"$tessera-salted${algorithm}${layout}${salt_b64encode(salt.encode('utf-8'))}${digest}"


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
        scheme = password_context.identify(value)
        if scheme is None or not _parses(_handler(scheme), value):
            raise InvalidInput("unrecognized password hash: declare its format")
        normalized = value
    else:
        raise InvalidInput(f"unknown password hash format {fmt!r}")

    if len(normalized) > MAX_STORED_HASH_LENGTH:
        raise InvalidInput(f"the password hash is longer than {MAX_STORED_HASH_LENGTH} characters")
    return normalized
