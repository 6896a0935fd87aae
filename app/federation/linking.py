"""What an upstream login resolves to: its linked account, or a pending login the user turns into
a new account or links to an existing one with a fresh proof.

An upstream identity is an ``Identity`` of kind ``upstream``: ``namespace`` is the provider's
slug, ``value`` the subject the upstream gave us, ``unionid`` the platform-wide id when the
upstream sends one (WeChat's unionid is the same for one person in every app of one developer
account, while the openid differs per app). Resolution:

1. ``(provider slug, subject)`` names a live identity → its account;
2. else a ``unionid`` known on a provider of the same platform (or this provider when it has no
   platform) → that account, and this app's subject is recorded on it;
3. else the login is *pending*: the user creates a new account or links an existing one with a
   fresh proof. Nothing is ever linked automatically; a matching mode may only *suggest* an
   existing account whose verified phone/email equals the upstream's verified one.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.identifiers import normalize_email, normalize_phone
from app.accounts.login import get_active_account, mark_login
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.otp import send_code, verify_code
from app.errors import AuthenticationFailed, Conflict, InvalidInput
from app.extensions import db
from app.federation.models import PendingUpstreamLogin, UpstreamProvider
from app.federation.upstream import UpstreamError, UpstreamUser
from app.security import new_secret, utcnow


def _unionid_namespaces(provider: UpstreamProvider) -> list[str]:
    """The providers whose unionids are one space: every provider of the platform, or itself."""
    if not provider.platform:
        return [provider.slug]
    return list(db.session.scalars(db.select(UpstreamProvider.slug).filter_by(platform=provider.platform)))


def _live_upstream_identity(**filters) -> Identity | None:
    return db.session.scalar(
        db.select(Identity).filter_by(kind="upstream", released_at=None, **filters).order_by(Identity.id).limit(1)
    )


def display_name(claims: dict) -> str | None:
    text = claims.get("name") or claims.get("nickname") or claims.get("preferred_username") or claims.get("email")
    return str(text)[:320] if text else None


def find_linked_identity(provider: UpstreamProvider, user: UpstreamUser) -> Identity | None:
    """The live identity this upstream login belongs to, recording this app's subject on the
    account when only the unionid was known. None: not linked yet. The caller commits."""
    identity = _live_upstream_identity(namespace=provider.slug, value=user.subject)
    if identity is not None:
        if user.unionid and not identity.unionid:
            identity.unionid = user.unionid
        identity.display = display_name(user.claims) or identity.display
        return identity
    if not user.unionid:
        return None
    sibling = db.session.scalar(
        db.select(Identity).where(
            Identity.kind == "upstream", Identity.released_at.is_(None), Identity.unionid == user.unionid,
            Identity.namespace.in_(_unionid_namespaces(provider)),
        ).order_by(Identity.id).limit(1)
    )
    if sibling is None:
        return None
    identity = Identity(account_id=sibling.account_id, kind="upstream", namespace=provider.slug,
                        value=user.subject, unionid=user.unionid, verified=True, display=display_name(user.claims))
    db.session.add(identity)
    db.session.flush()
    audit.record("identity.linked", account_id=sibling.account_id, actor="system", identity="upstream",
                 provider=provider.slug, reason="same unionid as an identity of this platform")
    return identity


def record_federated_login(account: Account, identity: Identity, provider: UpstreamProvider,
                           client_id: int | None, linked_now: bool = False) -> None:
    mark_login(account, identity, client_id)
    audit.record("login.success", account_id=account.id, actor="self", client_id=client_id, method="fed",
                 provider=provider.slug, **({"linked": True} if linked_now else {}))
    db.session.commit()


def login_or_pend(provider: UpstreamProvider, user: UpstreamUser, *, interaction_uid: str,
                  browser_hash: str, client_id: int | None) -> Account | PendingUpstreamLogin:
    """The account to log in, or a pending login for the user to decide on."""
    try:
        identity = find_linked_identity(provider, user)
        if identity is not None:
            account = get_active_account(identity.account_id)
            if account is None:
                audit.record("login.failure", account_id=identity.account_id, client_id=client_id, method="fed",
                             provider=provider.slug, reason="inactive account")
                db.session.commit()
                raise UpstreamError("the account linked to this login is not active")
            record_federated_login(account, identity, provider, client_id)
            return account
    except IntegrityError:  # another request recorded the same subject meanwhile: try again from the top
        db.session.rollback()
        return login_or_pend(provider, user, interaction_uid=interaction_uid, browser_hash=browser_hash,
                             client_id=client_id)

    now = utcnow()
    db.session.execute(db.delete(PendingUpstreamLogin).where(PendingUpstreamLogin.expires_at <= now))
    pending = PendingUpstreamLogin(
        uid=new_secret(24), provider_id=provider.id, subject=user.subject, unionid=user.unionid,
        claims=user.claims, interaction_uid=interaction_uid, browser_hash=browser_hash,
        expires_at=now + timedelta(seconds=current_app.config["TESSERA_INTERACTION_TTL"]),
    )
    db.session.add(pending)
    db.session.commit()
    return pending


def load_pending(uid: str, browser_hash: str) -> PendingUpstreamLogin | None:
    """The pending login, if it exists, has not expired, belongs to this browser and its upstream
    is enabled (disabling one drops its pending logins: this holds for one a callback was still
    recording meanwhile)."""
    pending = db.session.scalar(db.select(PendingUpstreamLogin).filter_by(uid=uid or ""))
    if pending is None or pending.expires_at <= utcnow() or pending.browser_hash != browser_hash:
        return None
    if not db.session.scalar(db.select(UpstreamProvider.enabled).filter_by(id=pending.provider_id)):
        return None
    return pending


def pending_provider(pending: PendingUpstreamLogin) -> UpstreamProvider:
    return db.session.get(UpstreamProvider, pending.provider_id)


def suggested_login(pending: PendingUpstreamLogin) -> str | None:
    """The identifier of an existing account to pre-select on the link page, per the provider's
    matching mode: only a *verified* phone/email upstream that equals a *verified* identity here.
    A suggestion only fills in the form: linking still needs the account's own proof."""
    provider = pending_provider(pending)
    claims = pending.claims or {}
    if provider.matching_mode == "verified_email":
        kind, value, verified = "email", claims.get("email"), claims.get("email_verified")
        normalize = normalize_email
    elif provider.matching_mode == "verified_phone":
        kind, value, verified = "phone", claims.get("phone_number"), claims.get("phone_number_verified")
        normalize = normalize_phone
    else:
        return None
    if verified is not True or not value:
        return None
    try:
        value = normalize(value)
    except InvalidInput:
        return None
    identity = db.session.scalar(
        db.select(Identity).filter_by(kind=kind, namespace="", value=value, released_at=None, verified=True)
    )
    if identity is None or get_active_account(identity.account_id) is None:
        return None
    return value


def _upstream_identity(pending: PendingUpstreamLogin, provider: UpstreamProvider, account_id: int) -> Identity:
    return Identity(account_id=account_id, kind="upstream", namespace=provider.slug, value=pending.subject,
                    unionid=pending.unionid, verified=True, display=display_name(pending.claims or {}))


def _flush_or_taken() -> None:
    """Write the new upstream identity; a concurrent login that linked it first wins."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("this upstream account was linked to an account meanwhile; log in with it again") from None


def link_pending(pending: PendingUpstreamLogin, account: Account, proof: str, client_id: int | None) -> Identity:
    """Link the pending upstream identity to ``account``, whose ownership the user has just proved
    (``proof``: "pwd" or "otp"). One transaction; the pending login is used up."""
    provider = pending_provider(pending)
    identity = _upstream_identity(pending, provider, account.id)
    db.session.add(identity)
    db.session.delete(pending)
    audit.record("identity.linked", account_id=account.id, actor="self", client_id=client_id, identity="upstream",
                 provider=provider.slug, proof=proof)
    _flush_or_taken()
    record_federated_login(account, identity, provider, client_id, linked_now=True)
    return identity


def create_account_from_pending(pending: PendingUpstreamLogin, client_id: int | None) -> tuple[Account, Identity]:
    """A new account whose first identity is the upstream one. The upstream's email and phone
    become identities too, but only when the upstream says they are verified and nobody here has
    them already (taken ones are skipped: never a way into someone else's account)."""
    provider = pending_provider(pending)
    claims = pending.claims or {}
    profile = {c: str(claims[c])[:100] for c in ("name", "nickname", "given_name", "family_name", "preferred_username")
               if claims.get(c) and c in PROFILE_CLAIMS}
    if claims.get("picture") and len(str(claims["picture"])) <= 500:
        profile["picture"] = str(claims["picture"])
    account = Account(**profile)
    db.session.add(account)
    db.session.flush()
    identity = _upstream_identity(pending, provider, account.id)
    db.session.add(identity)
    added = ["upstream"]
    for kind, claim, normalize in (("email", "email", normalize_email), ("phone", "phone_number", normalize_phone)):
        if claims.get(f"{claim}_verified") is not True or not claims.get(claim):
            continue
        try:
            value = normalize(claims[claim])
        except InvalidInput:
            continue
        taken = db.session.scalar(db.select(Identity.id).filter_by(kind=kind, namespace="", value=value, released_at=None))
        if taken is None:
            db.session.add(Identity(account_id=account.id, kind=kind, namespace="", value=value, verified=True))
            added.append(kind)
    db.session.delete(pending)
    audit.record("account.created", account_id=account.id, actor="self", client_id=client_id, method="fed",
                 provider=provider.slug, identities=added)
    _flush_or_taken()
    record_federated_login(account, identity, provider, client_id)
    return account, identity


def send_link_code(phone: str) -> str:
    """Send a one-time code (purpose "link") to ``phone``; returns the challenge uid. Sent whether
    or not the number belongs to an account, so the answer reveals nothing about who exists."""
    return send_code(phone, "link").uid


def account_by_link_code(challenge_uid: str, code: str) -> Account:
    """The active account whose phone the code was sent to. AuthenticationFailed for a wrong,
    expired or used code, or a number that names no active account (only said after the code
    proved the number is the user's)."""
    challenge = verify_code(challenge_uid, code, "link")
    identity = db.session.scalar(
        db.select(Identity).filter_by(kind="phone", namespace="", value=challenge.phone, released_at=None)
    )
    account = get_active_account(identity.account_id) if identity is not None else None
    if account is None:
        raise AuthenticationFailed("no account here has this phone number")
    mark_login(account, identity)
    return account


def expire_pending(pending: PendingUpstreamLogin) -> None:
    db.session.delete(pending)
    db.session.commit()
