"""Data contracts (what a client may read and write) and the consent rule of the partner API.

Seed 003: in data exchange the person only *authorizes*; the system that needs the data asks for
it, field by field. A client reads or writes a person's data only when (1) its contract lists
the claim, (2) the person is related to the client or its tenant (``app.partners.relationship``:
first-party clients are not exempt) and (3) the person agreed to share with this client: a
consent covering the ``partner`` scope, or the tenant's agreement for a first-party client
(``is_trusted``). A contract may also demand a level of the person's authentication for writes
(``write_acr``, RFC 9470: ``Contract.require_write_assurance``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from app import audit
from app.accounts.claims import ATTRIBUTE_PREFIX
from app.accounts.models import PROFILE_CLAIMS
from app.errors import InvalidInput, TesseraError
from app.extensions import db
from app.oidc.assurance import level
from app.oidc.authorization import consenting_accounts, is_trusted
from app.oidc.clients import check_acr_values
from app.oidc.models import Client
from app.partners.models import DataContract
from app.partners.relationship import related_accounts

#: The consent scope a person grants (on the consent page) to let a client exchange their data.
CONSENT_SCOPE = "partner"
#: Token scopes of the partner API.
SCOPES = ("partner:read", "partner:write", "partner:lookup", "partner:register")
#: Scopes a token obtained by Token Exchange (on a person's behalf) may carry.
USER_BOUND_SCOPES = ("partner:read", "partner:write")
#: RFC 8693: the grant a partner backend trades a person's access token with (app.partners.token_exchange).
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

ATTRIBUTE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Claims a contract may let a client read / write. Identities (phone, email) change only through
#: binding with a code sent to them, never through a partner's write.
READABLE = (*PROFILE_CLAIMS, "address", "addresses", "phone_number", "phone_number_verified", "email", "email_verified")
WRITABLE = (*PROFILE_CLAIMS, "address", "addresses")


class PartnerError(TesseraError):
    """A refusal of the partner API: an RFC 9457 problem with a stable ``reason``."""

    def __init__(self, status: int, reason: str, title: str, detail: str, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(detail)
        self.status, self.reason, self.title, self.headers = status, reason, title, headers or {}
        #: Further members of the problem body (RFC 9457 3.2 extension members).
        self.extra = extra or {}


def not_found() -> PartnerError:
    """One answer for an unknown person and a person who did not agree to share (no enumeration)."""
    return PartnerError(404, "user_not_found", "Unknown user", "no such user for this client")


@dataclass(frozen=True)
class Contract:
    client_pk: int
    read: frozenset[str]
    write: frozenset[str]
    subscribe: bool
    lookup_salt: str
    #: The acr a person's authentication must reach for this client to write their claims (None: any).
    write_acr: str | None = None

    @staticmethod
    def _allows(claims: frozenset[str], claim: str) -> bool:
        if claim in claims:
            return True
        return claim.startswith(ATTRIBUTE_PREFIX) and f"{ATTRIBUTE_PREFIX}*" in claims

    def can_read(self, claim: str) -> bool:
        return self._allows(self.read, claim)

    def can_write(self, claim: str) -> bool:
        return self._allows(self.write, claim)

    @property
    def has_attributes(self) -> bool:
        return any(c.startswith(ATTRIBUTE_PREFIX) for c in self.read | self.write)

    def require_write_assurance(self, token_level: int) -> None:
        """A write needs the person's authentication behind the token to reach ``write_acr``
        (``token_level`` 0: no person authenticated, a client-credentials token). RFC 9470 3: else
        401 ``insufficient_user_authentication`` naming the ``acr_values`` to come back with."""
        if self.write_acr is None or token_level >= level(self.write_acr):
            return
        detail = (f"writing this person's data needs an authentication of at least {self.write_acr}: "
                  "have the person sign in again at that level and exchange their new access token")
        if token_level == 0:
            detail = f"writing a person's data needs a token on their behalf (Token Exchange) of at least {self.write_acr}"
        # RFC 9470 3: the challenge names the acr the client should ask for at the authorization server.
        challenge = (f'Bearer error="insufficient_user_authentication", '
                     f'error_description="{detail}", acr_values="{self.write_acr}"')
        raise PartnerError(401, "insufficient_user_authentication", "Insufficient user authentication", detail,
                           headers={"WWW-Authenticate": challenge}, extra={"acr_values": self.write_acr})


def _validate_claims(names: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    result = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if name.startswith(ATTRIBUTE_PREFIX):
            rest = name[len(ATTRIBUTE_PREFIX):]
            if rest != "*" and not ATTRIBUTE_NAME_RE.match(rest):
                raise InvalidInput(f"bad attribute name in the {what} contract: {name!r}")
        elif name not in allowed:
            raise InvalidInput(f"{name!r} cannot be in a {what} contract (allowed: {', '.join(allowed)}, attributes.<name>, attributes.*)")
        result.append(name)
    return sorted(set(result))


def set_contract(client_id: str, *, read: list[str], write: list[str], subscribe: bool,
                 token_exchange: bool | None = None, write_acr: str | None = None,
                 actor: str) -> tuple[Client, DataContract]:
    """Create or replace a client's data contract; optionally allow it the Token Exchange grant.
    ``write_acr``: the assurance level (a supported ``acr``) the person's authentication must reach
    for the client's writes (None: any token may write). Audited as ``client.contract_set`` with
    ``actor``."""
    client = db.session.scalar(db.select(Client).filter_by(client_id=client_id))
    if client is None:
        raise InvalidInput(f"no client {client_id!r}")
    read_claims = _validate_claims(read, READABLE, "read")
    write_claims = _validate_claims(write, WRITABLE, "write")
    write_acr = (check_acr_values([write_acr]) or [None])[0] if write_acr else None
    contract = db.session.scalar(db.select(DataContract).filter_by(client_id=client.id))
    if contract is None:
        contract = DataContract(client_id=client.id, lookup_salt=secrets.token_hex(16))
        db.session.add(contract)
    contract.read_claims, contract.write_claims, contract.subscribe = read_claims, write_claims, subscribe
    contract.write_acr = write_acr
    if token_exchange is not None:
        grants = [g for g in client.grant_types if g != TOKEN_EXCHANGE_GRANT]
        client.grant_types = grants + [TOKEN_EXCHANGE_GRANT] if token_exchange else grants
    audit.record("client.contract_set", actor=actor, client_id=client.id, client=client_id, read=read_claims,
                 write=write_claims, subscribe=subscribe, token_exchange=token_exchange, write_acr=write_acr)
    db.session.commit()
    return client, contract


def contract_for(client: Client) -> Contract | None:
    row = db.session.scalar(db.select(DataContract).filter_by(client_id=client.id))
    if row is None:
        return None
    return Contract(client.id, frozenset(row.read_claims), frozenset(row.write_claims), row.subscribe, row.lookup_salt,
                    row.write_acr)


def may_access(client: Client, account_id: int) -> bool:
    """The person is related to the client or its tenant, and agreed to share with this client
    (consent), or the tenant did (first-party)."""
    return bool(accessible_accounts(client, {account_id}))


def accessible_accounts(client: Client, account_ids: set[int]) -> set[int]:
    """``may_access`` for many accounts at once (two queries at most)."""
    agreed = set(account_ids) if is_trusted(client) else consenting_accounts(set(account_ids), client, CONSENT_SCOPE)
    return related_accounts(client, agreed)
