"""Email verification by signed, expiring link: valid, tampered, expired, replaced address,
released identity; audited; idempotent."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.accounts.models import AuditEvent, Identity
from app.accounts.profile import create_account
from app.accounts.verification import send_email_verification
from app.extensions import db
from app.security import utcnow
from tests.accounts.conftest import new_phone
from tests.accounts.test_binding import audit_kinds, hub_login, sms  # noqa: F401
from tests.conftest import ISSUER
from tests.factories import PASSWORD
from tests.rp import Browser

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
    assert mail["link"] == link and link in mail["body"] and link.startswith(f"{ISSUER}/verify-email/")
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


# --- an unverified email never blocks its verified owner ------------------------------------------
def test_an_unverified_email_yields_to_its_owner_who_verifies_it(app, sms):  # noqa: F811
    """X types the victim's address into their account and never verifies it. X cannot log in
    with it; the owner Y adds it anyway, follows the link sent to it, and holds it verified: X's
    identity is released (audited, X told at a verified address), X's own old link is dead."""
    victim = "victim@example.com"
    x_phone, y_phone, outbox = new_phone(), new_phone(), sms
    with app.app_context():
        x = create_account(phone=x_phone, password=PASSWORD, email="x.own@example.com").id  # verified
        y = create_account(phone=y_phone, password="y's own password 123").id

    squatter = hub_login(app, x_phone)
    page = squatter.submit(squatter.go(f"{ISSUER}/account/"), {"email": victim, "submit": "Add email"},
                           url=f"{ISSUER}/account/email")
    assert "Follow the link" in page.get_data(as_text=True)
    [x_link] = [m["link"] for m in outbox.mails(victim)]

    def log_in(login: str, password: str):
        browser = Browser(app.test_client(), ISSUER)
        page = browser.go(f"{ISSUER}/account/login")
        return browser.submit(page, {"login": login, "password": password, "submit": "Log in"})

    assert log_in(victim, PASSWORD).status_code == 401  # an unverified email is no way in

    owner = hub_login(app, y_phone, "y's own password 123")
    page = owner.submit(owner.go(f"{ISSUER}/account/"), {"email": victim, "submit": "Add email"},
                        url=f"{ISSUER}/account/email")
    assert "Follow the link" in page.get_data(as_text=True) and "already used" not in page.get_data(as_text=True)
    claim_link = outbox.mails(victim)[-1]["link"]
    assert claim_link != x_link
    opened = app.test_client().get(urlsplit(claim_link).path)
    assert opened.status_code == 200 and victim in opened.get_data(as_text=True)

    with app.app_context():
        rows = db.session.scalars(db.select(Identity).filter_by(kind="email", value=victim).order_by(Identity.id)).all()
        assert [(r.account_id, r.verified, r.released_at is not None) for r in rows] == [(x, False, True), (y, True, False)]
        released = db.session.scalar(db.select(AuditEvent).filter_by(kind="identity.released", account_id=x))
        assert released.details["reason"] == "verified_by_owner"
    assert "identity.released" in audit_kinds(app, x)
    assert "identity.released" in squatter.go(f"{ISSUER}/account/").get_data(as_text=True)  # on X's page
    assert [m["subject"] for m in outbox.mails("x.own@example.com")] == ["An unverified email address was removed from your account"]

    assert log_in(victim, PASSWORD).status_code == 401  # X: never with it
    logged_in = log_in(victim, "y's own password 123")  # the owner: yes
    assert logged_in.status_code == 200 and "Ways to log in" in logged_in.get_data(as_text=True)
    assert app.test_client().get(urlsplit(x_link).path).status_code == 400  # X's old link names a released identity
    again = squatter.submit(squatter.go(f"{ISSUER}/account/"), {"email": victim, "submit": "Add email"},
                            url=f"{ISSUER}/account/email")
    assert "already used by an account" in again.get_data(as_text=True)
    assert app.test_client().get(urlsplit(claim_link).path).status_code == 200  # idempotent
