"""Account service: create accounts, resolve a login identifier, check a password."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts import audit
from app.accounts.budget import credential_check
from app.accounts.locking import lock_account
from app.accounts.identifiers import looks_like_phone, normalize_email, normalize_phone, normalize_username
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.otp import verify_code
from app.accounts.passwords import MIN_PASSWORD_LENGTH, burn_verification_time, hash_password, verify_password
from app.errors import AuthenticationFailed, Conflict, InvalidInput
from app.extensions import db
from app.security import utcnow
from app.signals import account_logged_in


def create_account(
    *, phone: str | None = None, password: str | None = None, email: str | None = None,
    username: str | None = None, tenant_id: int | None = None, verified: bool = True, **profile,
) -> Account:
    """Create an active account with its identities, in one transaction."""
    unknown = set(profile) - set(PROFILE_CLAIMS) - {"address"}
    if unknown:
        raise InvalidInput(f"unknown profile claims: {', '.join(sorted(unknown))}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
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
    unknown identifiers are asked of the legacy system (app.bulk_import.lazy). The check draws on
    the credential budget (``logged_in``: the account of a logged-in person proving another
    account, as in a merge); BudgetSpent when it is spent.
    """
    from app.bulk_import import lazy

    identity = find_identity(login, tenant_id)
    account = db.session.get(Account, identity.account_id) if identity else None
    with credential_check("pwd", identifier=login, account_id=account.id if account else None, logged_in=logged_in):
        # Lazy migration: an identifier the hub does not know (or a migrated account without a
        # password) is checked by the tenant's legacy system, if it has a verification webhook.
        migrated = lazy.migrate_on_login(login, password or "", tenant_id, account) \
            if lazy.wants_legacy_check(account, tenant_id) else None
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


def mark_login(account: Account, identity: Identity, client_id: int | None = None) -> None:
    """Record a successful login through ``identity`` (for dormancy rules) at the client
    ``client_id`` and announce it (``account_logged_in``); the caller commits.
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
    identity.last_used_at = now
    account_logged_in.send(account, identity=identity, client_id=client_id)


def get_active_account(account_id: int) -> Account | None:
    account = db.session.get(Account, account_id)
    return account if account is not None and account.is_active else None


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
        from app.partners.changes import note_write

        audit.record("profile.updated", account_id=account.id, actor="self", claims=sorted(changed))
        note_write(account.id, sorted(changed), source="self")  # provenance, change log, claims-changed SETs
    db.session.commit()
    return account


# --- self-service: sessions and connected clients (local imports: app.oidc imports this module) --

def live_sessions(account_id: int) -> list:
    """The account's hub sessions that have not ended or expired, newest first."""
    from app.oidc.models import SSOSession

    return list(db.session.scalars(
        db.select(SSOSession)
        .where(SSOSession.account_id == account_id, SSOSession.ended_at.is_(None), SSOSession.expires_at > utcnow())
        .order_by(SSOSession.created_at.desc(), SSOSession.id.desc())
    ))


def revoke_session(account_id: int, session_id: int) -> list[str]:
    """End one of the account's sessions (its clients are told, as for a logout); returns the
    front-channel logout URLs."""
    from app.errors import NotFound
    from app.oidc.logout import end_session
    from app.oidc.models import SSOSession

    session = db.session.get(SSOSession, session_id)
    if session is None or session.account_id != account_id or session.ended_at is not None:
        raise NotFound("no such session")
    frontchannel = end_session(session, commit=False)
    audit.record("session.revoked", account_id=account_id, actor="self", sid=session.sid)
    db.session.commit()
    return frontchannel


def connected_clients(account_id: int) -> list[dict]:
    """Clients the account consented to or holds live tokens at: {client, scope, tokens}."""
    import time

    from app.oidc.models import Client, Consent, Token

    now = int(time.time())
    consents = {c.client_id: c for c in db.session.scalars(db.select(Consent).filter_by(account_id=account_id))}
    live = (Token.revoked_at.is_(None)) & (
        (Token.issued_at + Token.expires_in > now) | (Token.refresh_expires_at > now)
    )
    counts = dict(db.session.execute(
        db.select(Token.client_id, db.func.count()).where(Token.account_id == account_id, live).group_by(Token.client_id)
    ).all())
    ids = set(consents) | set(counts)
    clients = db.session.scalars(db.select(Client).where(Client.id.in_(ids)).order_by(Client.name)) if ids else []
    return [
        {"client": c, "scope": consents[c.id].scope if c.id in consents else "", "tokens": counts.get(c.id, 0)}
        for c in clients
    ]


def revoke_client_access(account_id: int, client_pk: int) -> None:
    """Withdraw consent from a client and revoke every token it holds for the account."""
    from sqlalchemy import delete, update

    from app.errors import NotFound
    from app.oidc.models import Consent, Token

    now = utcnow()
    consents = db.session.execute(
        delete(Consent).where(Consent.account_id == account_id, Consent.client_id == client_pk)
    ).rowcount
    tokens = db.session.execute(
        update(Token).where(Token.account_id == account_id, Token.client_id == client_pk, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    if not consents and not tokens:
        db.session.rollback()
        raise NotFound("this site has no access to your account")
    audit.record("consent.revoked", account_id=account_id, actor="self", client_id=client_pk,
                 consent_removed=bool(consents), tokens_revoked=tokens)
    db.session.commit()
