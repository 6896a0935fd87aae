"""Email verification by signed, expiring link (itsdangerous, the app's secret key, salt
``email-verify``), good for 24 hours. Two kinds of link:

- *verify* (``{"identity", "email"}``): names an email identity of an account and its address;
  good only while that identity is still live with the same address. Opening it marks the email
  verified (audit ``identity.verified``).
- *claim* (``{"claim": account id, "email"}``): sent when a person adds an address another
  account holds unverified. Opening it proves the address for the claiming account:
  ``binding.claim_email`` releases the unverified holder's identity and gives the address to the
  claimant, verified. An unverified email never blocks its verified owner.

``read_email_link`` checks a link and returns what it names; the route hands it on."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app import audit
from app.accounts.claims import announcing_identity_claims
from app.accounts.mailer import send_mail
from app.accounts.models import Account, Identity
from app.errors import InvalidInput
from app.extensions import db

SALT = "email-verify"
MAX_AGE = 24 * 3600
INVALID = "this verification link is invalid or was replaced"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def _send_link(email: str, payload: dict) -> str:
    # Built from the issuer, not the request: it also works from the CLI and workers.
    link = f"{current_app.config['TESSERA_ISSUER']}/verify-email/{_serializer().dumps(payload)}"
    send_mail(
        email, "Verify your email address",
        f"Open this link within 24 hours to verify {email}:\n\n{link}\n\n"
        "If you did not ask for this, ignore this message.",
        link=link,
    )
    return link


def send_email_verification(identity: Identity) -> str:
    """Send a verification link to an email identity; returns the link."""
    if identity.kind != "email" or identity.released_at is not None:
        raise InvalidInput("only a live email identity can be verified")
    return _send_link(identity.value, {"identity": identity.id, "email": identity.value})


def send_email_claim(account_id: int, email: str) -> str:
    """Send a claim link for an address another account holds unverified: following it proves
    the address for ``account_id``. Returns the link."""
    return _send_link(email, {"claim": account_id, "email": email})


def read_email_link(token: str, max_age: int = MAX_AGE) -> dict:
    """What a link names: ``{"claim": account id, "email"}`` or ``{"identity", "email"}``.
    InvalidInput when it is tampered with, expired or malformed."""
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidInput("this verification link has expired") from None
    except BadSignature:
        raise InvalidInput(INVALID) from None
    if not isinstance(data, dict) or not isinstance(data.get("email"), str):
        raise InvalidInput(INVALID)
    if "claim" in data and not isinstance(data["claim"], int):
        raise InvalidInput(INVALID)
    return data


def confirm_email(data: dict) -> Identity:
    """Mark the identity a *verify* link names verified (idempotent). InvalidInput when its
    identity was released, changed or closed."""
    identity = db.session.get(Identity, data.get("identity")) if isinstance(data.get("identity"), int) else None
    if (identity is None or identity.kind != "email" or identity.released_at is not None
            or identity.value != data.get("email")):
        raise InvalidInput(INVALID)
    account = db.session.get(Account, identity.account_id)
    if account is None or not account.is_active:
        raise InvalidInput(INVALID)
    if not identity.verified:
        with announcing_identity_claims(identity.account_id, source="self"):
            identity.verified = True
        audit.record("identity.verified", account_id=identity.account_id, actor="self", identity="email",
                     value=identity.value, method="link")
        db.session.commit()
    return identity
