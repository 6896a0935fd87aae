"""Email verification by signed, expiring link: valid, tampered, expired, replaced address,
released identity; audited; idempotent."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.accounts.models import AuditEvent, Identity
from app.accounts.service import create_account
from app.accounts.verification import send_email_verification
from app.extensions import db
from app.security import utcnow
from tests.accounts.conftest import new_phone

EMAIL = "someone@example.com"


@pytest.fixture
def email_identity(app):
    with app.app_context():
        account = create_account(phone=new_phone(), email=EMAIL, verified=False)
        return account.identity("email").id


def _identity(app, identity_id: int) -> Identity:
    with app.app_context():
        return db.session.get(Identity, identity_id)


def _send(app, identity_id: int) -> str:
    with app.app_context():
        return send_email_verification(db.session.get(Identity, identity_id))


def test_link_verifies_the_email(app, outbox, http, email_identity):
    link = _send(app, email_identity)
    [mail] = outbox.mails(EMAIL)
    assert mail["link"] == link and link in mail["body"] and link.startswith("http://localhost/verify-email/")
    response = http.get(urlsplit(link).path)
    assert response.status_code == 200 and "verified" in response.get_data(as_text=True)
    assert _identity(app, email_identity).verified
    with app.app_context():
        events = db.session.scalars(db.select(AuditEvent).filter_by(kind="identity.verified")).all()
        assert [(e.account_id, e.details["value"]) for e in events] == [(_identity(app, email_identity).account_id, EMAIL)]
    # Opening it again changes nothing and records nothing more.
    assert http.get(urlsplit(link).path).status_code == 200
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).filter_by(kind="identity.verified")) == 1


def test_a_verified_email_is_a_claims_change_for_partners_polling(app, outbox, http, factories, email_identity):
    from tests.partners.conftest import Partners

    partners = Partners(app, factories, http)
    partner = partners.make(read="email,email_verified")
    sub = partners.share(partner, _identity(app, email_identity).account_id)
    assert http.get(urlsplit(_send(app, email_identity)).path).status_code == 200
    changes = http.get("/api/changes", headers=partner.headers()).get_json()["changes"]
    assert [(c["sub"], c["claims"]) for c in changes] == [(sub, ["email_verified"])]


def test_tampered_link_is_refused(app, outbox, http, email_identity):
    token = urlsplit(_send(app, email_identity)).path.rsplit("/", 1)[1]
    payload, rest = token.split(".", 1)
    forged = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + rest
    for bad in (forged, token[:-2], "not-a-token"):
        response = http.get(f"/verify-email/{bad}")
        assert response.status_code == 400 and "cannot be used" in response.get_data(as_text=True)
    assert not _identity(app, email_identity).verified


def test_token_signed_for_another_purpose_is_refused(app, outbox, http, email_identity):
    identity = _identity(app, email_identity)
    other = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="something-else")
    response = http.get(f"/verify-email/{other.dumps({'identity': identity.id, 'email': EMAIL})}")
    assert response.status_code == 400 and not _identity(app, email_identity).verified


def test_expired_link_is_refused(app, outbox, http, email_identity):
    class DayOldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 24 * 3600 - 60

    old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="email-verify", signer=DayOldSigner)
    response = http.get(f"/verify-email/{old.dumps({'identity': email_identity, 'email': EMAIL})}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert not _identity(app, email_identity).verified


def test_link_of_a_released_identity_is_refused(app, outbox, http, email_identity):
    link = _send(app, email_identity)
    with app.app_context():
        db.session.get(Identity, email_identity).released_at = utcnow()
        db.session.commit()
    assert http.get(urlsplit(link).path).status_code == 400
    assert not _identity(app, email_identity).verified


def test_link_for_a_replaced_address_is_refused(app, outbox, http, email_identity):
    link = _send(app, email_identity)
    with app.app_context():
        db.session.get(Identity, email_identity).value = "changed@example.com"
        db.session.commit()
    assert http.get(urlsplit(link).path).status_code == 400
    assert not _identity(app, email_identity).verified


def test_console_mailer_logs_the_link(app, http, email_identity, caplog, monkeypatch):
    monkeypatch.setitem(app.config, "TESSERA_SMS_SENDER", "console")
    with caplog.at_level("WARNING", logger="tessera.mail"):
        link = _send(app, email_identity)
    assert link in caplog.text and EMAIL in caplog.text


def test_only_live_email_identities_get_a_link(app, email_identity):
    from app.errors import InvalidInput

    with app.app_context():
        phone = db.session.scalar(db.select(Identity).filter_by(kind="phone", account_id=_identity(app, email_identity).account_id))
        with pytest.raises(InvalidInput):
            send_email_verification(phone)
