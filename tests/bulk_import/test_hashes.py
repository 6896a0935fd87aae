"""Legacy password hashes: every format verifies with known vectors (published ones, or made by
the real library or by hashlib independently of passlib), is stored as normalize_legacy_hash
says, and becomes argon2id at the first successful login."""

import base64
import hashlib
import warnings
from types import SimpleNamespace

import argon2
import bcrypt
import pytest
from passlib.hash import phpass, scrypt
from sqlalchemy import text

from app.accounts.passwords import password_context, verify_password
from app.bulk_import.hashes import normalize_legacy_hash
from app.errors import InvalidInput
from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # glibc's crypt(3): an implementation of the *-crypt formats other than passlib's

PW = "correct horse"


def _django_pbkdf2(password: str, salt: str, iterations: int, algorithm: str = "sha256") -> str:
    digest = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt.encode(), iterations)
    return f"pbkdf2_{algorithm}${iterations}${salt}${base64.b64encode(digest).decode()}"


def _ssha(password: str, salt: bytes) -> str:
    return base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


#: (declared format, legacy hash as the legacy table holds it, its password)
VECTORS = [
    # Published vectors
    ("bcrypt", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"),  # OpenBSD / John the Ripper
    ("md5_crypt", "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1", "Hello world!"),
    ("sha256_crypt", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"),  # Drepper's spec
    ("sha512_crypt", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
     "Hello world!"),
    ("phpass", "$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0", "test12345"),  # phpass's test.php (WordPress)
    ("drupal7", "$S$D2sypG2KL6EjTo08zxDCAx4D3lcAQx7Tk.hydYvH/hEDiNfo2AHS", "admin1"),  # Drupal's password-hash.sh
    ("drupal7", "$S$DXZrp425p2VN9LXpDWxiBeqSZSPexyZNNPUo80fTTN2e/W15a97G", "huan"),
    # Made by the real libraries
    ("bcrypt", bcrypt.hashpw(PW.encode(), bcrypt.gensalt(4)).decode(), PW),
    ("bcrypt", bcrypt.hashpw(PW.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1), PW),  # PHP
    ("bcrypt", bcrypt.hashpw(("é" * 36).encode(), bcrypt.gensalt(4)).decode(), "é" * 50),  # 72-byte truncation
    ("md5_crypt", crypt.crypt(PW, "$1$abcdefgh"), PW),
    ("sha256_crypt", crypt.crypt(PW, "$5$rounds=5000$saltsalt"), PW),
    ("sha512_crypt", crypt.crypt(PW, "$6$saltsaltsalt"), PW),
    ("argon2", argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=2, type=argon2.Type.ID).hash(PW), PW),
    ("argon2", argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=argon2.Type.I).hash(PW), PW),
    ("django_pbkdf2_sha256", _django_pbkdf2(PW, "seasalt1", 1000), PW),
    ("django_pbkdf2_sha1", _django_pbkdf2(PW, "seasalt2", 1000, "sha1"), PW),
    ("pbkdf2_sha256", "$pbkdf2-sha256$1000$" + base64.b64encode(b"0123456789abcdef").decode().rstrip("=").replace("+", ".")
     + "$" + base64.b64encode(hashlib.pbkdf2_hmac("sha256", PW.encode(), b"0123456789abcdef", 1000)).decode().rstrip("=").replace("+", "."), PW),
    ("pbkdf2_sha512", "$pbkdf2-sha512$1000$" + base64.b64encode(b"fedcba9876543210").decode().rstrip("=").replace("+", ".")
     + "$" + base64.b64encode(hashlib.pbkdf2_hmac("sha512", PW.encode(), b"fedcba9876543210", 1000)).decode().rstrip("=").replace("+", "."), PW),
    ("scrypt", scrypt.using(rounds=4).hash(PW), PW),
    ("ssha", "{SSHA}" + _ssha(PW, b"salt"), PW),
    ("ssha", _ssha(PW, b"pepper!"), PW),  # the column without its {SSHA} prefix
    ("sha", "{SHA}" + base64.b64encode(hashlib.sha1(PW.encode()).digest()).decode(), PW),
    ("salted_md5:{salt}{password}", "s4lt$" + hashlib.md5(b"s4lt" + PW.encode()).hexdigest(), PW),
    ("salted_sha1:{password}{salt}", "pepper$" + hashlib.sha1(PW.encode() + b"pepper").hexdigest(), PW),
    ("salted_sha256:{salt}{password}{salt}", "x$y$" + hashlib.sha256(b"x$y" + PW.encode() + b"x$y").hexdigest(), PW),
    ("md5", hashlib.md5(PW.encode()).hexdigest().upper(), PW),
    ("sha1", hashlib.sha1(PW.encode()).hexdigest(), PW),
    (None, phpass.hash(PW), PW),  # self-describing: no format declared
]


@pytest.mark.parametrize(("fmt", "legacy", "password"), VECTORS, ids=[f"{v[0]}-{i}" for i, v in enumerate(VECTORS)])
def test_legacy_hash_verifies_and_is_rehashed_to_argon2id(ctx, fmt, legacy, password):
    stored = normalize_legacy_hash(legacy, fmt)
    assert password_context.identify(stored) is not None
    ok, new_hash = verify_password(password, stored)
    assert ok, (fmt, stored)
    assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(password, new_hash) == (True, None)
    assert verify_password("x" + password, stored) == (False, None)


def test_salted_layouts_are_self_describing(ctx):
    stored = normalize_legacy_hash("s4lt$" + hashlib.md5(b"s4lt" + PW.encode()).hexdigest(), "salted_md5:{salt}{password}")
    assert stored == f"$tessera-salted$md5$sp${base64.urlsafe_b64encode(b's4lt').decode().rstrip('=')}$" \
                     + hashlib.md5(b"s4lt" + PW.encode()).hexdigest()
    # The same digest read in the other layout does not verify: the layout is part of the hash.
    swapped = stored.replace("$sp$", "$ps$")
    assert verify_password(PW, swapped) == (False, None)


@pytest.mark.parametrize(("legacy", "fmt"), [
    ("", "bcrypt"),
    ("$2b$04$tooShort", "bcrypt"),
    ("$1$abcdefgh$YMyguxXMBpd2TEZ.vS/3q1", "sha512_crypt"),  # declared format does not match
    ("$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "bcrypt"),
    ("abc", "nonsense"),
    ("s4lt" + "0" * 32, "salted_md5:{salt}{password}"),  # no salt$ separator
    ("s4lt$" + "0" * 31, "salted_md5:{salt}{password}"),  # not an md5 digest
    ("s4lt$" + "0" * 32, "salted_md5:md5({salt})"),  # unknown layout
    ("s4lt$" + "0" * 32, "salted_crc32:{salt}{password}"),
    ("z" * 32, "md5"),
    ("plaintext-password", None),  # unrecognized without a format
    # Configuration strings: passlib parses them, but without a checksum no password ever matches.
    ("$6$saltsalt$", None), ("$6$saltsalt$", "sha512_crypt"), ("$5$rounds=5000$saltsalt$", None),
    ("$5$rounds=5000$saltsalt", "sha256_crypt"), ("$1$abcdefgh$", None), ("$apr1$abcdefgh$", None),
    ("pbkdf2_sha256$1000$salt$", None), ("pbkdf2_sha256$1000$salt$", "django_pbkdf2_sha256"),
    ("$pbkdf2-sha256$1000$c2FsdA$", None), ("$scrypt$ln=4,r=8,p=1$c2FsdA$", None),
    ("$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ", None), ("argon2$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ", None),
    ("$2b$12$" + "C" * 21 + "u", None), ("$2b$12$" + "C" * 21 + "u", "bcrypt"), ("sha1$salt$", "django_salted_sha1"),
    ("$S$D2sypG2KL", None), ("{SHA}", "sha"),
    # phpass with a short checksum (passlib does not check its length)
    ("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r", None), ("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r", "phpass"),
])
def test_invalid_legacy_hashes_are_refused(ctx, legacy, fmt):
    with pytest.raises(InvalidInput):
        normalize_legacy_hash(legacy, fmt)


def test_wrapped_handlers_are_recognized(ctx):
    """django_argon2 and django_bcrypt_sha256 are passlib prefix wrappers: recognized, not a crash."""
    from passlib.hash import django_argon2, django_bcrypt_sha256

    for handler in (django_argon2.using(rounds=1, memory_cost=1024), django_bcrypt_sha256.using(rounds=4)):
        legacy = handler.hash(PW)
        stored = normalize_legacy_hash(legacy, None)
        assert stored == legacy and verify_password(PW, stored)[0]


def test_wrong_password_on_a_cheap_legacy_hash_costs_an_argon2_verification(ctx, monkeypatch):
    """Timing: a failed login on an account with a salted-MD5 hash takes as long as one on an
    unknown identifier (both verify the dummy argon2 hash); a right one pays the rehash."""
    burned = []  # argon2 verifications, seen at the argon2 library (the real one still runs)
    real_verify = argon2.low_level.verify_secret

    def verify_secret(hash, secret, type):  # noqa: A002
        burned.append(secret.decode())
        return real_verify(hash, secret, type)

    monkeypatch.setattr(argon2.low_level, "verify_secret", verify_secret)
    stored = normalize_legacy_hash(hashlib.md5(PW.encode()).hexdigest(), "md5")
    assert verify_password("wrong password", stored) == (False, None)
    assert burned == ["wrong password"]
    ok, new_hash = verify_password(PW, stored)
    assert ok and new_hash.startswith("$argon2id$") and burned == ["wrong password"]


@pytest.mark.parametrize("fmt", ["salted_sha1:{salt}{password}", "drupal7"])
def test_account_with_a_legacy_hash_logs_in_through_the_login_page(app, factories, browser, http, fmt):
    legacy = {
        "salted_sha1:{salt}{password}": "NaCl$" + hashlib.sha1(b"NaCl" + PW.encode()).hexdigest(),
        "drupal7": None,
    }[fmt]
    password = PW
    if legacy is None:
        legacy, password = "$S$Dr3Hm8Od9X0Ux/olZ.B8Uwh6./3E1l4nPfXebovKVvMB9zcmjkTn", "Cookies1"
    account = factories.account()
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET password_hash = :h WHERE id = :id"),
                           {"h": normalize_legacy_hash(legacy, fmt), "id": account.id})
        db.session.commit()
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    wrong = SimpleNamespace(phone=account.phone, password=password + "!")
    request, response = authorize(browser, rp, wrong)
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)
    request, response = authorize(browser, rp, SimpleNamespace(phone=account.phone, password=password))
    code_from(response, request)
    with app.app_context():
        stored = db.session.execute(text("SELECT password_hash FROM accounts WHERE id = :id"), {"id": account.id}).scalar()
    assert stored.startswith("$argon2id$")
    assert verify_password(password, stored) == (True, None)
