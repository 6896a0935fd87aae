"""Token and account reads on the hot paths: userinfo, introspection, revocation, the partner
API's bearer check, Token Exchange's subject token, and the account behind a code or refresh
token at the token endpoint.

These run on every call a relying party or partner makes, so each is one narrow statement instead
of ORM entities and lazy loads: the token's columns, its account's status and (for userinfo) the
claim-bearing columns with the primary phone and email as scalar subqueries. Token lookups run on an
autocommit connection from the pool (no BEGIN … ROLLBACK round trips); the token endpoint's account
read runs in the request's transaction. bench/README.md has the measurements. Nothing here writes:
revocation updates by the id found here, rotation and code redemption claim their row with an
``UPDATE … RETURNING`` in ``server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, select

from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.dbutil import autocommit_engine
from app.extensions import db
from app.oidc.models import Token, TokenLifetime
from app.security import token_hash


@dataclass(frozen=True, slots=True)
class IdentityValue:
    value: str
    verified: bool


class ClaimFields:
    """The claim-bearing fields of an account as read by ``find_access_token(..., with_claims=True)``
    and ``active_account_claims``. Offers what ``app.oidc.claims.account_claims`` reads from an
    ``Account``: ``id``, the profile columns, ``updated_at``, ``address`` and ``identity(kind)``
    for the primary phone and email."""

    __slots__ = ("id", "updated_at", "address", "_identities", *PROFILE_CLAIMS)

    def __init__(self, account_id: int, values: dict, identities: dict[str, IdentityValue | None]):
        self.id = account_id
        for name, value in values.items():
            setattr(self, name, value)
        self._identities = identities

    def identity(self, kind: str) -> IdentityValue | None:
        return self._identities.get(kind)


@dataclass(frozen=True, slots=True)
class TokenRecord(TokenLifetime):
    """A token as the read paths see it. ``presented_as`` says which of its two values matched."""

    id: int
    client_id: int  # clients.id (the cache key of ``get_client_by_pk``)
    family_id: str
    account_id: int | None
    account_active: bool
    scope: str
    claims: dict | None
    #: The person's authentication the token stands on (OIDC Core 2: auth_time, acr, amr); None
    #: for a client-credentials token.
    auth_time: int | None
    acr: str | None
    amr: list | None
    issued_at: int
    expires_in: int
    refresh_expires_at: int | None
    refresh_used_at: datetime | None
    revoked_at: datetime | None
    presented_as: str
    account: ClaimFields | None = None

    def is_active(self) -> bool:
        """Live, and (when it belongs to a person) the person's account is active: merged-away,
        closed and locked accounts make their tokens inactive."""
        if self.account_id is not None and not self.account_active:
            return False
        if self.presented_as == "refresh_token":
            return self.is_refresh_token_active()
        return not self.is_revoked() and not self.is_expired()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope.split()


_TOKEN_COLUMNS = (
    Token.id, Token.client_id, Token.family_id, Token.account_id, Token.scope, Token.claims, Token.auth_time, Token.acr,
    Token.amr, Token.issued_at, Token.expires_in, Token.refresh_expires_at, Token.refresh_used_at, Token.revoked_at,
)
_IDENTITY_KINDS = ("phone", "email")


def _primary_identity(kind: str, column):
    """The account's primary live identity of ``kind`` (verified first, then oldest), as
    ``Account.identity`` chooses it."""
    return (
        select(column)
        .where(Identity.account_id == Account.id, Identity.kind == kind, Identity.released_at.is_(None))
        .order_by(Identity.verified.desc(), Identity.id)
        .limit(1)
        .scalar_subquery()
    )


#: The claim-bearing columns of an account, in the order ``_claim_fields`` reads them.
_CLAIM_COLUMNS = (
    Account.updated_at, Account.address, *(getattr(Account, c) for c in PROFILE_CLAIMS),
    *(_primary_identity(kind, getattr(Identity, column)) for kind in _IDENTITY_KINDS for column in ("value", "verified")),
)


def _statement(column, with_claims: bool) -> Select:
    columns = [*_TOKEN_COLUMNS, Account.status, *(_CLAIM_COLUMNS if with_claims else ())]
    # Outer join: client-credentials tokens have no account.
    return select(*columns).outerjoin(Account, Account.id == Token.account_id).where(column == bindparam("digest"))


_ACCOUNT_CLAIMS = select(Account.id, *_CLAIM_COLUMNS).where(Account.id == bindparam("account_id"), Account.status == "active")


_STATEMENTS = {
    (column.key, with_claims): _statement(column, with_claims)
    for column in (Token.access_token_hash, Token.refresh_token_hash)
    for with_claims in (False, True)
}


def find_access_token(token_string: str, with_claims: bool = False) -> TokenRecord | None:
    """The token whose access token is ``token_string``; ``with_claims`` also reads the account's
    claim-bearing fields (userinfo)."""
    return _find(token_string, ("access_token",), with_claims)


def find_token(token_string: str, hint: str | None = None) -> TokenRecord | None:
    """The token whose access or refresh token is ``token_string``, trying the kind ``hint``
    names first (RFC 7662 2.1 / RFC 7009 2.1 ``token_type_hint``: only a hint)."""
    order = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
    return _find(token_string, order, False)


def _find(token_string: str, kinds: tuple[str, ...], with_claims: bool) -> TokenRecord | None:
    digest = token_hash(token_string)
    with autocommit_engine().connect() as connection:
        for kind in kinds:
            row = connection.execute(_STATEMENTS[(f"{kind}_hash", with_claims)], {"digest": digest}).first()
            if row is not None:
                return _record(row, kind, with_claims)
    return None


def active_account_claims(account_id: int) -> ClaimFields | None:
    """The claim-bearing fields of an active account, in one statement: the token endpoint's
    ``request.user`` (it needs the id for the new token and the claims for the ID token)."""
    row = db.session.execute(_ACCOUNT_CLAIMS, {"account_id": account_id}).first()
    return _claim_fields(row[0], row[1:]) if row is not None else None


def _claim_fields(account_id: int, values) -> ClaimFields:
    n = 2 + len(PROFILE_CLAIMS)
    fields = dict(zip(("updated_at", "address", *PROFILE_CLAIMS), values[:n]))
    rest = values[n:]
    identities = {
        kind: IdentityValue(rest[2 * i], bool(rest[2 * i + 1])) if rest[2 * i] is not None else None
        for i, kind in enumerate(_IDENTITY_KINDS)
    }
    return ClaimFields(account_id, fields, identities)


def _record(row, presented_as: str, with_claims: bool) -> TokenRecord:
    n = len(_TOKEN_COLUMNS)
    token = dict(zip(("id", "client_id", "family_id", "account_id", "scope", "claims", "auth_time", "acr", "amr",
                      "issued_at", "expires_in", "refresh_expires_at", "refresh_used_at", "revoked_at"), row[:n]))
    status = row[n]
    account = None
    if with_claims and token["account_id"] is not None:
        account = _claim_fields(token["account_id"], row[n + 1:])
    return TokenRecord(**token, account_active=status == "active", presented_as=presented_as, account=account)
