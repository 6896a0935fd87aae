"""Binding identities to accounts: bind and rebind a phone (seed 004's three cases), add an email
or a username, unbind, deregister. Every service is one transaction and writes audit events.

The rules (docs/flows/binding.md explains them):

- Binding a phone someone else holds, after an OTP to that phone proved possession:
  (a) nobody holds it → it is added to the account;
  (b) an active account with no business data holds it → the phone and every other identity of
      that account move here (nothing that let someone in is lost), the emptied account is closed
      and its subjects, if any, become aliases of this account;
  (c) an account with business data holds it → ``NeedsMerge`` (the merge flow decides);
  a dormant account (no login for ``TESSERA_DORMANT_DAYS``) holds it → the number was probably
      recycled by the carrier: only the phone is released from it and bound here; the dormant
      account keeps its data, is never merged or closed, and is locked if the phone was its last
      way in (an operator can recover it).
- An active account always keeps at least one way to log in (``ways_in``).
- Deregistration closes the account at once (the person, or an operator: ``close_account``); its
  identities stay reserved for the cooling-off period, then ``release_expired_deregistrations``
  frees them. Subjects are never reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, exists, func, update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts import otp
from app.accounts.claims import announcing_identity_claims
from app.accounts.identifiers import normalize_email, normalize_phone, normalize_username
from app.accounts.locking import lock_account
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.phone_login import is_dormant
from app.accounts.mailer import send_mail
from app.accounts.verification import confirm_email, read_email_link, send_email_claim, send_email_verification
from app.errors import Conflict, InvalidInput, NeedsMerge, NotFound
from app.extensions import db
from app.oidc.connections import revoke_account_tokens
from app.oidc.models import Consent, SSOSession, SubjectMapping
from app.registries import registries
from app.security import utcnow
from app.signals import account_closed, account_locked
from app.tenants.models import Tenant


BOUND_MEANWHILE = "this number was bound to another account meanwhile, try again"


@dataclass
class BindResult:
    identity: Identity
    #: Case (b): the empty account that was closed, its identities now here.
    closed_account_id: int | None = None
    #: The recycled-number rule: the dormant account the phone was released from.
    released_from_account_id: int | None = None
    #: Front-channel logout URLs of sessions ended on the way (the closed account's).
    frontchannel: list[str] = field(default_factory=list)


# --- rules ---------------------------------------------------------------------------------------

def has_business_data(account: Account) -> bool:
    """Whether closing the account would lose something besides its ways in: it was ever used at
    a client (an authorization code, a token, a consent, a subject mapping) or has a profile
    claim set, or holds imported or partner-written data. Such an account is merged, never
    silently closed."""
    if any(getattr(account, claim) for claim in PROFILE_CLAIMS) or account.address:
        return True
    # Each domain registers its tables (app.registries): the protocol's codes, tokens, consents and
    # subjects; imported legacy records, tenant-scoped attributes and address-book entries (legacy or
    # partner-written) are data too.
    for model in registries().business_data:
        if db.session.scalar(db.select(exists().where(model.account_id == account.id))):
            return True
    return False


def can_log_in_with(account: Account, identity: Identity) -> bool:
    """Whether ``identity`` alone lets the person in: a verified phone (OTP), an upstream subject,
    a verified email or a username when the account has a password. A password alone is not a
    way in: it needs an identifier to go with it."""
    if identity.released_at is not None:
        return False
    if identity.kind == "phone":
        return identity.verified
    if identity.kind == "upstream":
        return True
    if identity.kind == "email":
        return identity.verified and bool(account.password_hash)
    if identity.kind == "username":
        return bool(account.password_hash)
    return False


def ways_in(account: Account, identities: list[Identity] | None = None) -> list[Identity]:
    identities = live_identities(account.id) if identities is None else identities
    return [i for i in identities if can_log_in_with(account, i)]


def removable_identities(account: Account, identities: list[Identity]) -> set[int]:
    """Ids of the identities ``unbind_identity`` would accept (not the last way in)."""
    return {i.id for i in identities if ways_in(account, [o for o in identities if o.id != i.id])}


# --- services ------------------------------------------------------------------------------------

def bind_phone(account_id: int, phone: str, challenge_uid: str, code: str) -> BindResult:
    """Add a phone to the account after an OTP (purpose ``bind``) sent to it."""
    phone = _verified_phone(account_id, phone, challenge_uid, code, "bind")
    holder_id = _phone_holder_id(phone)
    account = _lock_accounts(account_id, holder_id)
    if any(i.kind == "phone" and i.value == phone for i in live_identities(account.id)):
        raise Conflict("this number is already bound to your account")
    with _unique(BOUND_MEANWHILE), announcing_identity_claims(account.id, holder_id, source="self"):
        result = _attach_phone(account, phone)
    audit.record("identity.bound", account_id=account.id, actor="self", identity_kind="phone", value=phone,
                 closed_account=result.closed_account_id, released_from=result.released_from_account_id)
    _commit(BOUND_MEANWHILE)
    return result


def rebind_phone(account_id: int, new_phone: str, challenge_uid: str, code: str) -> BindResult:
    """Change the account's phone: an OTP (purpose ``rebind``) to the NEW number proves it; the
    old number is released. A new number held elsewhere follows the bind rules."""
    new_phone = _verified_phone(account_id, new_phone, challenge_uid, code, "rebind")
    holder_id = _phone_holder_id(new_phone)
    account = _lock_accounts(account_id, holder_id)
    old = [i for i in live_identities(account.id) if i.kind == "phone"]
    if any(i.value == new_phone for i in old):
        raise InvalidInput("this is already your number")
    with _unique(BOUND_MEANWHILE), announcing_identity_claims(account.id, holder_id, source="self"):
        result = _attach_phone(account, new_phone)
        now = utcnow()
        for identity in old:
            identity.released_at = now
    audit.record("identity.rebound", account_id=account.id, actor="self", identity_kind="phone",
                 old=[i.value for i in old], new=new_phone,
                 closed_account=result.closed_account_id, released_from=result.released_from_account_id)
    _commit(BOUND_MEANWHILE)
    return result


def unbind_identity(account_id: int, identity_id: int) -> None:
    """Release one identity of the account, unless it is the last way to log in."""
    account = _active_account(account_id, lock=True)
    identities = live_identities(account.id)
    identity = next((i for i in identities if i.id == identity_id), None)
    if identity is None:
        raise NotFound("no such identity on this account")
    if not ways_in(account, [i for i in identities if i.id != identity_id]):
        raise Conflict("this is your last way to log in: add another one (a phone, or an email or "
                       "username with a password) before removing it")
    with announcing_identity_claims(account.id, source="self"):
        identity.released_at = utcnow()
    audit.record("identity.unbound", account_id=account.id, actor="self", identity_kind=identity.kind, value=identity.value)
    db.session.commit()


def add_email(account_id: int, email: str) -> Identity | None:
    """Add an email, unverified until the link sent to it is followed. An address another
    account holds *unverified* is no obstacle: a claim link goes to it instead and nothing is
    added yet (``claim_email`` gives it to this account once the link proves it). None then."""
    value = normalize_email(email)
    account = _active_account(account_id, lock=True)
    taken = "this email address is already used by an account"
    holder = db.session.scalar(db.select(Identity).filter_by(kind="email", namespace="", value=value, released_at=None))
    if holder is not None and holder.account_id != account.id and not holder.verified:
        audit.record("identity.claim_sent", account_id=account.id, actor="self", identity_kind="email", value=value)
        db.session.commit()
        send_email_claim(account.id, value)
        return None
    # The first email becomes the email claim (unverified): noted like any claim change.
    with _unique(taken), announcing_identity_claims(account.id, source="self"):
        identity = _add_identity(account, "email", "", value, verified=False, taken=taken)
    _commit(taken)
    send_email_verification(identity)
    return identity


def follow_email_link(token: str) -> Identity:
    """The link of a verification email was opened: verify the identity it names, or give the
    address it claims to the account that asked (``claim_email``). InvalidInput when it cannot."""
    data = read_email_link(token)
    if "claim" in data:
        return claim_email(data["claim"], data["email"])
    return confirm_email(data)


def claim_email(account_id: int, value: str) -> Identity:
    """The person proved ``value`` for ``account_id`` (the link sent to the address was opened):
    an unverified email never blocks its verified owner. In one transaction, an account holding
    the address unverified loses it (``identity.released``, reason ``verified_by_owner``; told by
    mail if it has another verified address, and on its /account security events) and the
    address becomes this account's, verified. Idempotent; InvalidInput when the account is not
    active or another account verified the address meanwhile."""
    taken = "this email address was verified by another account meanwhile"
    holder_id = db.session.scalar(db.select(Identity.account_id).filter_by(
        kind="email", namespace="", value=value, released_at=None))
    account = _lock_accounts(account_id, holder_id)
    holder = db.session.scalar(db.select(Identity).filter_by(kind="email", namespace="", value=value, released_at=None)
                               .with_for_update().execution_options(populate_existing=True))
    if holder is not None and holder.account_id == account.id:
        if not holder.verified:
            with announcing_identity_claims(account.id, source="self"):
                holder.verified = True
            audit.record("identity.verified", account_id=account.id, actor="self", identity="email", value=value,
                         method="link")
        db.session.commit()
        return holder
    if holder is not None and holder.verified:
        raise InvalidInput(taken)
    released_from = holder.account_id if holder is not None else None
    with _unique(taken), announcing_identity_claims(account.id, released_from, source="self"):
        if holder is not None:
            holder.released_at = utcnow()
            audit.record("identity.released", account_id=released_from, actor="system", identity_kind="email",
                         value=value, reason="verified_by_owner")
            db.session.flush()  # the released row leaves the live unique index before the new one arrives
        identity = _new_identity(account, "email", "", value, verified=True)
        audit.record("identity.added", account_id=account.id, actor="self", identity_kind="email", value=value,
                     verified=True, method="link", released_from_another_account=released_from is not None)
    _commit(taken)
    if released_from is not None:
        _tell_released(released_from, value)
    return identity


def _tell_released(account_id: int, value: str) -> None:
    """Mail the account whose unverified address was claimed, at a verified address it has."""
    other = next((i for i in live_identities(account_id) if i.kind == "email" and i.verified), None)
    if other is not None:
        send_mail(other.value, "An unverified email address was removed from your account",
                  f"{value} was on your account without being verified. Its owner has now verified it, "
                  "so it was removed from your account.")


def add_username(account_id: int, tenant_id: int, username: str) -> Identity:
    """Add a username, unique within its tenant."""
    value = normalize_username(username)
    if db.session.get(Tenant, tenant_id) is None:
        raise NotFound("no such tenant")
    account = _active_account(account_id, lock=True)
    taken = "this username is taken in this tenant"
    identity = _add_identity(account, "username", str(tenant_id), value, verified=True, taken=taken)
    _commit(taken)
    return identity


@dataclass
class Closure:
    """What closing an account ended (``close_account``)."""

    #: Front-channel logout URLs of the ended sessions, for the page of the browser that closed it.
    frontchannel: list[str]
    sessions_ended: int
    tokens_revoked: int
    consents_removed: int


def deregister(account_id: int) -> list[str]:
    """The person closes their own account (/account/deregister): ``close_account`` with actor
    "self". Returns the front-channel logout URLs of the ended sessions."""
    return close_account(account_id, actor="self").frontchannel


def close_account(account_id: int, *, actor: str, reason: str | None = None,
                  statuses: tuple[str, ...] = ("active",)) -> Closure:
    """Close the account: every session ends (its clients are told by back-channel logout),
    every token is revoked, every consent removed. Its identities stay reserved for
    ``TESSERA_DEREGISTRATION_COOLING_OFF_DAYS``; its id and subjects are never reused. Audited
    ``account.deregistered`` with ``actor`` (and ``reason``). Only from ``statuses`` (the person
    closes an active account; an operator may also close one it locked)."""
    account = lock_account(account_id)
    if account is None or account.status not in statuses:
        raise InvalidInput("this account is not active")
    sessions = db.session.scalar(db.select(func.count()).select_from(SSOSession)
                                 .filter_by(account_id=account.id, ended_at=None))
    account.status, account.closed_at = "closed", utcnow()
    frontchannel = _announce(account_closed, account, "deregistered")
    revoked = revoke_account_tokens(account.id)
    consents = db.session.execute(delete(Consent).where(Consent.account_id == account.id)).rowcount
    details = {"reason": reason} if reason else {}
    audit.record("account.deregistered", account_id=account.id, actor=actor, tokens_revoked=revoked,
                 consents_removed=consents, sessions_ended=sessions,
                 release_after_days=current_app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"], **details)
    db.session.commit()
    return Closure(frontchannel, sessions, revoked, consents)


def release_expired_deregistrations(limit: int = 100) -> int:
    """Release the identities of accounts deregistered more than the cooling-off period ago, so
    their phone, email and usernames can be used again (by a new account: a new id, new subjects).
    Run by the outbox worker. Returns the number of identities released."""
    cutoff = utcnow() - timedelta(days=current_app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"])
    identities = list(db.session.scalars(
        db.select(Identity).join(Account, Account.id == Identity.account_id)
        .where(Account.status == "closed", Account.closed_at <= cutoff, Identity.released_at.is_(None))
        .limit(limit)
    ))
    now = utcnow()
    for identity in identities:
        identity.released_at = now
        audit.record("identity.released", account_id=identity.account_id, actor="system", identity_kind=identity.kind,
                     value=identity.value, reason="deregistration cooling-off ended")
    db.session.commit()
    return len(identities)


# --- steps ---------------------------------------------------------------------------------------

def _verified_phone(account_id: int, phone: str, challenge_uid: str, code: str, purpose: str) -> str:
    """The E.164 number a consumed OTP challenge proves, if it was sent to ``phone`` for this account."""
    phone = normalize_phone(phone)
    challenge = otp.verify_code(challenge_uid, code, purpose)
    if challenge.phone != phone or challenge.account_id != account_id:
        raise InvalidInput("this code was sent for another number")
    return phone


def _attach_phone(account: Account, phone: str) -> BindResult:
    """Give ``phone`` (verified) to ``account`` by the seed's three cases; the caller commits."""
    holder_identity = db.session.scalar(
        db.select(Identity).filter_by(kind="phone", namespace="", value=phone, released_at=None)
    )
    if holder_identity is None:  # (a) nobody holds it
        return BindResult(identity=_new_identity(account, "phone", "", phone, verified=True))
    holder = db.session.get(Account, holder_identity.account_id)  # locked by _lock_accounts
    if holder.status != "active":
        # Closed in its cooling-off period, or locked: the number is reserved for its owner.
        raise Conflict("this number belongs to an account that was closed or locked recently; "
                       "it cannot be bound now")
    if is_dormant(holder):
        return _release_recycled(holder, holder_identity, account)
    if has_business_data(holder):  # (c)
        raise NeedsMerge(
            "this number belongs to another account that was already used (at a site of the group, or "
            "with profile details). Combining two such accounts is a merge, which keeps the data of "
            "both; the number was not moved.",
            other_account_id=holder.id, origin="phone_binding",
            reason=f"bound {phone}, which belonged to another account",
        )
    return _absorb_empty(holder, account, holder_identity)  # (b)


def _absorb_empty(empty: Account, survivor: Account, phone_identity: Identity) -> BindResult:
    """Case (b): move every identity of the empty account to the survivor, close it, alias its subjects."""
    moved = live_identities(empty.id)
    for identity in moved:
        identity.account_id = survivor.id
        audit.record("identity.moved", account_id=survivor.id, actor="self", identity_kind=identity.kind,
                     value=identity.value, from_account=empty.id)
    phone_identity.verified = True
    # Defensive under the current definition (an account with subjects has business data), and
    # what keeps every sub a client saw resolving if that definition is ever narrowed.
    db.session.execute(
        update(SubjectMapping).where(SubjectMapping.account_id == empty.id)
        .values(account_id=survivor.id, alias=True)
    )
    empty.status, empty.closed_at = "closed", utcnow()
    frontchannel = _announce(account_closed, empty, "emptied")
    audit.record("account.closed", account_id=empty.id, actor=f"account:{survivor.id}",
                 reason="emptied by a phone bind", into=survivor.id, identities=[i.value for i in moved])
    return BindResult(identity=phone_identity, closed_account_id=empty.id, frontchannel=frontchannel)


def _release_recycled(dormant: Account, phone_identity: Identity, newcomer: Account) -> BindResult:
    """A dormant account's number verified by someone else: the newcomer inherits nothing."""
    phone_identity.released_at = utcnow()
    audit.record("identity.released", account_id=dormant.id, actor="system", identity_kind="phone",
                 value=phone_identity.value, reason="recycled_number", by_account=newcomer.id)
    if not ways_in(dormant):
        dormant.status = "locked"
        _announce(account_locked, dormant, "recycled_number")
        audit.record("account.locked", account_id=dormant.id, actor="system",
                     reason="recycled_number: no way to log in left")
    db.session.flush()  # the released row leaves the live unique index before the new one arrives
    identity = _new_identity(newcomer, "phone", "", phone_identity.value, verified=True)
    return BindResult(identity=identity, released_from_account_id=dormant.id)


def _add_identity(account: Account, kind: str, namespace: str, value: str, *, verified: bool, taken: str) -> Identity:
    holder = db.session.scalar(
        db.select(Identity.account_id).filter_by(kind=kind, namespace=namespace, value=value, released_at=None)
    )
    if holder == account.id:
        raise Conflict(f"this {kind} is already on your account")
    if holder is not None:
        raise Conflict(taken)
    identity = _new_identity(account, kind, namespace, value, verified=verified)
    audit.record("identity.added", account_id=account.id, actor="self", identity_kind=kind, value=value,
                 namespace=namespace or None, verified=verified)
    return identity  # the caller commits (``_commit(taken)``)


def _new_identity(account: Account, kind: str, namespace: str, value: str, *, verified: bool) -> Identity:
    identity = Identity(account_id=account.id, kind=kind, namespace=namespace, value=value, verified=verified)
    db.session.add(identity)
    return identity


def live_identities(account_id: int) -> list[Identity]:
    return list(db.session.scalars(
        db.select(Identity).filter_by(account_id=account_id, released_at=None).order_by(Identity.id)
    ))


def _active_account(account_id: int, lock: bool = False) -> Account:
    """The active account; with ``lock``, in the order of app.accounts.locking (row lock, then
    the merge lock: AccountBusy while a merge runs, then the status)."""
    account = lock_account(account_id) if lock else db.session.get(Account, account_id)
    if account is None or not account.is_active:
        raise InvalidInput("this account is not active")
    return account


def _phone_holder_id(phone: str) -> int | None:
    return db.session.scalar(
        db.select(Identity.account_id).filter_by(kind="phone", namespace="", value=phone, released_at=None)
    )


def _announce(signal, account: Account, reason: str) -> list[str]:
    """Send ``account_closed`` / ``account_locked`` (app/signals.py) in this transaction; returns
    the front-channel logout URLs the receivers gave back (the sessions they ended)."""
    return [url for _, urls in signal.send(account, reason=reason) for url in (urls or [])]


def _lock_accounts(account_id: int, other_id: int | None) -> Account:
    """Lock the account and the other holder's row (PostgreSQL; SQLite serializes writers
    anyway), always in id order so that two binds across the same pair cannot deadlock.
    Returns the (active) account. A merge running on either account: the retry answer."""
    for locked_id in sorted({account_id, other_id} - {None}):
        lock_account(locked_id)  # the row lock, then the merge lock (app.accounts.locking)
    return _active_account(account_id)


@contextmanager
def _unique(conflict_detail: str) -> Iterator[None]:
    """A live-identity unique index refusing a row (a concurrent request took the identifier
    first) is a Conflict, and the transaction is rolled back."""
    try:
        yield
    except IntegrityError:
        db.session.rollback()
        raise Conflict(conflict_detail) from None


def _commit(conflict_detail: str) -> None:
    with _unique(conflict_detail):
        db.session.commit()
