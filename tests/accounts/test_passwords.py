"""Passwords: argon2id with the OWASP parameters, legacy hashes verified and upgraded on login."""

from passlib.hash import bcrypt
from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def test_new_passwords_are_argon2id_owasp(app, factories):
    account = factories.account()
    with app.app_context():
        stored = db.session.execute(text("SELECT password_hash FROM accounts WHERE id = :id"), {"id": account.id}).scalar()
    assert stored.startswith("$argon2id$") and "m=19456,t=2,p=1" in stored


def test_legacy_bcrypt_hash_logs_in_and_is_rehashed(app, factories, http, browser):
    account = factories.account()
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET password_hash = :h WHERE id = :id"),
                           {"h": bcrypt.hash("legacy password 1"), "id": account.id})
        db.session.commit()
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    account.password = "legacy password 1"
    request, response = authorize(browser, rp, account)
    code_from(response, request)
    with app.app_context():
        stored = db.session.execute(text("SELECT password_hash FROM accounts WHERE id = :id"), {"id": account.id}).scalar()
    assert stored.startswith("$argon2id$")
