"""Logging in: which account a typed identifier names, password and code checks (every one on the
credential budget, app/accounts/budget.py), re-authentication, and recording a login — which
the core announces (``app.signals.account_logged_in``). When the hub cannot check a password
itself, it asks the registered login fallbacks (``app.registries``: lazy migration)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from app import audit
from app.accounts.budget import credential_check
from app.accounts.identifiers import looks_like_phone, normalize_email, normalize_phone, normalize_username
from app.accounts.locking import lock_account
from app.accounts.models import Account, Identity
from app.accounts.otp import verify_code
from app.accounts.passwords import burn_verification_time, verify_password
from app.errors import AuthenticationFailed, InvalidInput
from app.extensions import db
from app.registries import registries
from app.security import utcnow
from app.signals import account_logged_in


def find_identity(login: str, tenant_id: int | None = None) -> Identity | None:
    """The live identity a typed login (phone, email or tenant username) names, if any. An
    unverified email names nobody: it is never a way to log in, nor to find an account to link
    or merge (whoever typed it into their account has not shown it is theirs)."""
    login = (login or "").strip()
    candidates: list[tuple[str, str, str]] = []
    if "@" in login:
        try:
            candidates.append(("email", "", normalize_email(login)))
        except InvalidInput:
            return None
    else:
        if looks_like_phone(login):
            try:
                candidates.append(("phone", "", normalize_phone(login)))
            except InvalidInput:
                pass
        if tenant_id is not None:
            try:
                candidates.append(("username", str(tenant_id), normalize_username(login)))
            except InvalidInput:
                pass
    for kind, namespace, value in candidates:
        identity = db.session.scalar(
            db.select(Identity).filter_by(kind=kind, namespace=namespace, value=value, released_at=None)
        )
        if identity is not None and (identity.verified or kind != "email"):
            return identity
    return None


def password_matches(account: Account, password: str | None) -> bool:
    """Whether ``password`` is the account's. On a match, a legacy or outdated hash is replaced by
    the current argon2id one (the caller commits)."""
    ok, new_hash = verify_password(password or "", account.password_hash)
    if ok and new_hash:
        account.password_hash = new_hash
    return ok


def authenticate_password(login: str, password: str, tenant_id: int | None = None, client_id: int | None = None,
                          logged_in: int | None = None) -> Account:
    """The active account that ``login`` names, if ``password`` is its password.

    One answer for every failure (unknown identifier, no password, wrong password, inactive
    account) and the same argon2 work in every case, so nothing can be learned about who exists.
    Successes and failures are audited. With ``tenant_id`` and a tenant verification webhook,
    unknown identifiers are asked of the registered login fallbacks (``app.registries``; lazy
migration registers one for tenants with a verification webhook). The check draws on
    the credential budget (``logged_in``: the account of a logged-in person proving another
    account, as in a merge); BudgetSpent when it is spent.
    """
    identity = find_identity(login, tenant_id)
    account = db.session.get(Account, identity.account_id) if identity else None
    with credential_check("pwd", identifier=login, account_id=account.id if account else None, logged_in=logged_in):
        # An identifier the hub does not know (or a migrated account without a password) is checked
        # by the first login fallback that wants it (lazy migration: the tenant's legacy system).
        migrated = _ask_fallbacks(login, password or "", tenant_id, account)
        if migrated is not None:
            account, identity = migrated
            ok = True  # the hub's argon2id hash of the password was just made
        elif account is None:
            burn_verification_time(password or "")
            ok = False
        else:
            ok = password_matches(account, password)
        if ok:
            try:
                # The status read above came before the slow hash: mark_login re-reads it under the
                # account's row lock (and the merge lock), and refuses an account no longer active.
                mark_login(account, identity, client_id)
            except AccountInactive:
                ok = False
                account = db.session.get(Account, account.id)
        if not ok:
            audit.record("login.failure", account_id=account.id if account else None, client_id=client_id,
                         method="pwd", reason="inactive account" if account is not None and not account.is_active
                         else "bad credentials")
            db.session.commit()
            raise AuthenticationFailed("wrong identifier or password")
        audit.record("login.success", account_id=account.id, actor="self", client_id=client_id, method="pwd",
                     identity=identity.kind)
        db.session.commit()
    return account


def _ask_fallbacks(login: str, password: str, tenant_id: int | None, account: Account | None):
    """(account, identity) from the first registered login fallback that wants this login and
    vouches for the password; None when none wants it or the one asked says no."""
    for fallback in registries().login_fallbacks:
        if fallback.wants(account, tenant_id):
            return fallback.migrate(login, password, tenant_id, account)
    return None


def confirm_password(account_id: int, password: str) -> None:
    """Re-authentication of a logged-in person with the account's password (the same argon2 work
    as a login, audited both ways, on the credential budget). AuthenticationFailed when it is wrong."""
    account = get_active_account(account_id)
    with credential_check("pwd", account_id=account_id, logged_in=account_id):
        if account is None:
            burn_verification_time(password or "")
        if account is None or not password_matches(account, password):
            audit.record("reauth.failure", account_id=account_id, actor="self", method="pwd")
            db.session.commit()
            raise AuthenticationFailed("wrong password")
        audit.record("reauth.success", account_id=account.id, actor="self", method="pwd")
        db.session.commit()


def confirm_phone_code(account_id: int, challenge_uid: str, code: str) -> None:
    """Re-authentication with a code sent (purpose ``reauth``) to the account's own verified phone
    (``verify_code`` draws on the credential budget)."""
    try:
        challenge = verify_code(challenge_uid, code, "reauth")
        if challenge.account_id != account_id:
            raise AuthenticationFailed("this code was sent for another account")
    except AuthenticationFailed:
        audit.record("reauth.failure", account_id=account_id, actor="self", method="otp")
        db.session.commit()
        raise
    audit.record("reauth.success", account_id=account_id, actor="self", method="otp")
    db.session.commit()


class AccountInactive(AuthenticationFailed):
    """The account a login was about to succeed on is no longer active (merged, closed, locked
    meanwhile): read again under its row lock."""


def mark_login(account: Account, identity: Identity | None, client_id: int | None = None) -> None:
    """Record a successful login through ``identity`` (for dormancy rules; None for a login that
    names no identifier: a passkey) at the client ``client_id`` and announce it
    (``account_logged_in``); the caller commits.
    In the one order of ``app.accounts.locking``: the account row is locked and re-read, the
    merge lock checked (AccountBusy while a merge runs: the login gets a retry answer), then the
    status (AccountInactive if the account stopped being active since the caller read it)."""
    if lock_account(account.id) is None or not account.is_active:
        db.session.rollback()
        raise AccountInactive("this account is not active")
    now = utcnow()
    # A login is not a change of the person's information: keep updated_at (the OIDC claim), which
    # the ORM's onupdate would otherwise bump on every login.
    db.session.execute(
        update(Account).where(Account.id == account.id)
        .values(last_login_at=now, updated_at=Account.updated_at)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(account, "last_login_at", now)
    if identity is not None:
        identity.last_used_at = now
    account_logged_in.send(account, identity=identity, client_id=client_id)


def get_active_account(account_id: int) -> Account | None:
    account = db.session.get(Account, account_id)
    return account if account is not None and account.is_active else None
