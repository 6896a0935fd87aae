"""An account's own data: creating an account with its identities, its profile claims (OIDC Core
5.1) — a change is announced (``app.signals.claims_changed``) — and its summary for operators."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.claims import announce
from app.accounts.identifiers import normalize_email, normalize_phone, normalize_username
from app.accounts.locking import lock_account
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.passwords import check_new_password, hash_password
from app.errors import Conflict, InvalidInput
from app.extensions import db


def create_account(
    *, phone: str | None = None, password: str | None = None, email: str | None = None,
    username: str | None = None, tenant_id: int | None = None, verified: bool = True, **profile,
) -> Account:
    """Create an active account with its identities, in one transaction."""
    unknown = set(profile) - set(PROFILE_CLAIMS) - {"address"}
    if unknown:
        raise InvalidInput(f"unknown profile claims: {', '.join(sorted(unknown))}")
    identities = []
    if phone:
        identities.append(Identity(kind="phone", namespace="", value=normalize_phone(phone), verified=verified))
    if email:
        identities.append(Identity(kind="email", namespace="", value=normalize_email(email), verified=verified))
    if username:
        if tenant_id is None:
            raise InvalidInput("a username belongs to a tenant")
        identities.append(Identity(kind="username", namespace=str(tenant_id), value=normalize_username(username), verified=True))
    if not identities:
        raise InvalidInput("an account needs at least one identity (phone, email or username)")
    if password is not None:
        check_new_password(password, [identity.value for identity in identities])

    account = Account(password_hash=hash_password(password) if password else None, **profile)
    db.session.add(account)
    try:
        db.session.flush()
        for identity in identities:
            identity.account_id = account.id
            db.session.add(identity)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("one of these identifiers already belongs to an account") from None
    return account


def account_to_dict(account: Account) -> dict:
    data = {"id": account.id, "status": account.status}
    for claim in PROFILE_CLAIMS:
        if getattr(account, claim):
            data[claim] = getattr(account, claim)
    data["identities"] = [
        {"kind": i.kind, "value": i.value, "verified": i.verified} for i in account.identities
    ]
    return data


def update_profile(account_id: int, **claims) -> Account:
    """Change profile claims (OIDC Core 5.1; empty values clear a claim), audited, one transaction."""
    unknown = set(claims) - set(PROFILE_CLAIMS) - {"address"}
    if unknown:
        raise InvalidInput(f"unknown profile claims: {', '.join(sorted(unknown))}")
    account = lock_account(account_id)
    if account is None or not account.is_active:
        raise InvalidInput("this account is not active")
    changed = {}
    for claim, value in claims.items():
        value = value or None
        if getattr(account, claim) != value:
            setattr(account, claim, value)
            changed[claim] = value is not None
    if changed:
        audit.record("profile.updated", account_id=account.id, actor="self", claims=sorted(changed))
        announce(account.id, changed, source="self")
    db.session.commit()
    return account
