"""Claims of an account as a client sees them (OIDC Core 5.1, 5.4, 5.5)."""

from __future__ import annotations

from app import json_input
from app.accounts.models import PROFILE_CLAIMS, Account
from app.oidc.models import Client
from app.oidc.subjects import subject_for

# OIDC Core 5.4: the claims each standard scope asks for.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": PROFILE_CLAIMS + ("updated_at",),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "address": ("address",),
}
CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
SUPPORTED_CLAIMS = ["sub", "iss", "auth_time", "acr", "amr", "sid", *CLAIM_SCOPE]
SUPPORTED_SCOPES = ["openid", *SCOPE_CLAIMS, "offline_access"]


def parse_claims_request(raw: str | None) -> dict | None:
    """The ``claims`` request parameter (OIDC Core 5.5), or ValueError if it is malformed."""
    if not raw:
        return None
    value = json_input.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("claims must be a JSON object")
    for member in ("userinfo", "id_token"):
        if member in value and not isinstance(value[member], dict | None):
            raise ValueError(f"claims.{member} must be a JSON object")
    return {m: value.get(m) or {} for m in ("userinfo", "id_token") if m in value}


def scopes_for_claims(claims_request: dict | None) -> set[str]:
    """Scopes whose consent covers the individually requested claims."""
    scopes = set()
    for member in (claims_request or {}).values():
        scopes.update(CLAIM_SCOPE[c] for c in member if c in CLAIM_SCOPE)
    return scopes


def claim_value(account: Account, claim: str):
    """The value of one claim of the account (None: it has none)."""
    if claim in PROFILE_CLAIMS:
        return getattr(account, claim)
    if claim == "updated_at":
        return int(account.updated_at.timestamp()) if account.updated_at else None
    if claim == "address":
        return account.address or None
    kind = "email" if claim.startswith("email") else "phone"
    identity = account.identity(kind)
    if identity is None:
        return None
    return identity.verified if claim.endswith("_verified") else identity.value


def account_claims(account: Account, client: Client, scope: str, requested: dict | None = None) -> dict:
    """``sub`` plus the claims that ``scope`` and the individually ``requested`` claims ask for,
    leaving out claims the account has no value for."""
    wanted: list[str] = []
    for s in scope.split():
        wanted.extend(SCOPE_CLAIMS.get(s, ()))
    wanted.extend(c for c in (requested or {}) if c in CLAIM_SCOPE)
    claims = {"sub": subject_for(client, account.id)}
    for claim in dict.fromkeys(wanted):
        value = claim_value(account, claim)
        if value is not None and value != "":
            claims[claim] = value
    return claims
