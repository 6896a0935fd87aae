"""Email verification by signed, expiring link: the token (itsdangerous, the app's secret key,
salt ``email-verify``) names the identity and its address; it is good for 24 hours and only
while that identity is still live with the same address. Opening it marks the email verified
(audit ``identity.verified``)."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.accounts import audit
from app.accounts.mailer import send_mail
from app.accounts.models import Account, Identity
from app.errors import InvalidInput
from app.extensions import db
from app.partners.changes import noting_identity_claims

SALT = "email-verify"
MAX_AGE = 24 * 3600
INVALID = "this verification link is invalid or was replaced"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def email_verification_token(identity: Identity) -> str:
    return _serializer().dumps({"identity": identity.id, "email": identity.value})


def send_email_verification(identity: Identity) -> str:
    """Send a verification link to an email identity; returns the link."""
    if identity.kind != "email" or identity.released_at is not None:
        raise InvalidInput("only a live email identity can be verified")
    # Built from the issuer, not the request: it also works from the CLI and workers.
    link = f"{current_app.config['TESSERA_ISSUER']}/verify-email/{email_verification_token(identity)}"
    send_mail(
        identity.value, "Verify your email address",
        f"Open this link within 24 hours to verify {identity.value}:\n\n{link}\n\n"
        "If you did not ask for this, ignore this message.",
        link=link,
    )
    return link


def confirm_email(token: str, max_age: int = MAX_AGE) -> Identity:
    """Mark the identity a verification token names verified (idempotent). InvalidInput when the
    token is tampered with, expired, or its identity was released, changed or closed."""
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidInput("this verification link has expired") from None
    except BadSignature:
        raise InvalidInput(INVALID) from None
    identity = db.session.get(Identity, data.get("identity")) if isinstance(data, dict) else None
    if (identity is None or identity.kind != "email" or identity.released_at is not None
            or identity.value != data.get("email")):
        raise InvalidInput(INVALID)
    account = db.session.get(Account, identity.account_id)
    if account is None or not account.is_active:
        raise InvalidInput(INVALID)
    if not identity.verified:
        with noting_identity_claims(identity.account_id, source="self"):
            identity.verified = True
        audit.record("identity.verified", account_id=identity.account_id, actor="self", identity="email",
                     value=identity.value, method="link")
        db.session.commit()
    return identity
