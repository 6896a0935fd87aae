"""The authorization endpoint's decisions (OIDC Core 3.1.2): after Authlib has validated the
client, redirect URI, response type, scope and PKCE, decide whether to issue a code at once, to
answer an error to the client (``prompt=none``), or to hand the browser to an interaction page.

``decide`` runs these steps in this order, each citing its rule:

=================  ============================================================================
step               rule
=================  ============================================================================
parse_prompt       Core 3.1.2.1: prompt values; ``none`` with any other value is invalid
parse_max_age      Core 3.1.2.1: non-negative integer seconds
parse_claims       Core 5.5: the ``claims`` parameter is a JSON object
login              Core 3.1.2.3: a live session, not older than max_age, unless prompt=login
                   or select_account asks for a new one
id_token_hint      Core 3.1.2.1: the hinted user must be the logged-in one
acr                Core 3.1.2.1 acr_values, 5.5.1.1 the acr claim, Registration 2
                   default_acr_values, the tenant's require_mfa (app.oidc.assurance): a session
                   below the level asked for is stepped up (a login); a fresh login still below
                   the minimum is refused (access_denied)
consent            Core 3.1.2.4: remembered or implied (trusted client) consent, unless
                   prompt=consent
=================  ============================================================================
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import current_app, session as browser_session

from app import audit
from app.accounts.models import Account
from app.extensions import db
from app.oidc.assurance import Requirement, requirement
from app.oidc.claims import parse_claims_request, scopes_for_claims
from app.oidc.id_tokens import decode_id_token_hint
from app.oidc.clients import ClientInfo
from app.oidc.models import Client, Consent, Interaction, SSOSession
from app.oidc.sessions import current_account, current_session
from app.oidc.subjects import subject_for
from app.security import new_secret, token_hash, utcnow

PROMPT_VALUES = {"none", "login", "consent", "select_account"}

# RFC 3986 2: the characters a URI may hold (a redirect URI is an absolute URI, RFC 6749 3.1.2).
URI_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# RFC 6749 A.3: response-type = response-name *( SP response-name ); response-char = "_" / DIGIT / ALPHA
RESPONSE_TYPE_RE = re.compile(r"[A-Za-z0-9_]+( [A-Za-z0-9_]+)*")


@dataclass
class AuthContext:
    """How and when the user authenticated, carried into the code and the tokens."""

    account: Account
    sid: str
    auth_time: int
    acr: str | None
    amr: list
    claims_request: dict | None


@dataclass
class Decision:
    #: "issue" (a code now) or "login" / "consent" (an interaction page first).
    outcome: str
    auth: AuthContext | None = None
    login_hint: str | None = None
    reasons: list[str] = field(default_factory=list)


def check_syntax(data) -> None:
    """Before Authlib sees the request: ``redirect_uri`` and ``response_type`` follow their grammar.
    Authlib quotes both in its error descriptions, which RFC 6749 4.1.2.1 limits to printable ASCII
    without ``"`` and ``\\``; and a redirect URI that is not a URI is never redirected to."""
    redirect_uri, response_type = data.get("redirect_uri"), data.get("response_type")
    if redirect_uri and not URI_RE.fullmatch(redirect_uri):
        raise InvalidRequestError("redirect_uri is not a URI (RFC 3986)")
    if response_type and not RESPONSE_TYPE_RE.fullmatch(response_type):
        raise InvalidRequestError("response_type is malformed (RFC 6749 A.3)")


def parse_prompt(data) -> set[str]:
    prompts = set((data.get("prompt") or "").split())
    unknown = prompts - PROMPT_VALUES
    if unknown:
        # Not quoted back: the description must stay printable ASCII (RFC 6749 4.1.2.1).
        raise InvalidRequestError(f"unsupported prompt value (supported: {', '.join(sorted(PROMPT_VALUES))})")
    if "none" in prompts and len(prompts) > 1:
        # Core 3.1.2.1: prompt=none with any other value is an error.
        raise InvalidRequestError("prompt=none cannot be combined with other values")
    return prompts


def parse_max_age(data) -> int | None:
    raw = data.get("max_age")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError("max_age must be a number of seconds") from None
    if value < 0:
        raise InvalidRequestError("max_age must not be negative")
    return value


def parse_claims(data) -> dict | None:
    try:
        return parse_claims_request(data.get("claims"))
    except ValueError as exc:
        raise InvalidRequestError(f"invalid claims parameter: {exc}") from None


def consent_scope(scope: str, claims_request: dict | None) -> str:
    """The scopes a consent must cover: those requested plus those of individually requested claims."""
    return " ".join(sorted(set(scope.split()) | scopes_for_claims(claims_request)))


def is_trusted(client: ClientInfo) -> bool:
    """A first-party client: consent is implied (its own flag, or its tenant's policy)."""
    return client.trusted or bool(client.tenant.policy.get("trust_all_clients"))


def has_consent(account_id: int, client: Client, scope: str) -> bool:
    granted = db.session.scalar(db.select(Consent.scope).filter_by(account_id=account_id, client_id=client.id))
    return granted is not None and _covers(granted, scope)


def consenting_accounts(account_ids: set[int], client: Client, scope: str) -> set[int]:
    """``has_consent`` for many accounts in one query: those whose consent covers ``scope``."""
    if not account_ids:
        return set()
    rows = db.session.execute(db.select(Consent.account_id, Consent.scope)
                              .where(Consent.client_id == client.id, Consent.account_id.in_(account_ids)))
    return {account_id for account_id, granted in rows if _covers(granted, scope)}


def _covers(granted: str, scope: str) -> bool:
    """A consent to the scopes ``granted`` covers a request for ``scope``."""
    return set(scope.split()) <= set(granted.split())


def grant_consent(account_id: int, client: Client, scope: str) -> None:
    consent = db.session.scalar(db.select(Consent).filter_by(account_id=account_id, client_id=client.id))
    if consent is None:
        db.session.add(Consent(account_id=account_id, client_id=client.id, scope=scope))
    else:
        consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scope.split())))
    audit.record("consent.granted", account_id=account_id, actor="self", client_id=client.id, scope=scope)
    db.session.commit()


def _login_satisfied_by(interaction: Interaction | None, session: SSOSession | None) -> bool:
    """True when the user logged in during this very interaction (prompt=login, max_age met)."""
    return bool(
        interaction is not None and interaction.login_completed_at is not None
        and session is not None and session.auth_time >= interaction.login_completed_at
    )


def decide(grant, interaction: Interaction | None = None) -> Decision:
    request = grant.request
    data, client = request.payload.data, request.client
    prompts = parse_prompt(data)
    max_age = parse_max_age(data)
    claims_request = parse_claims(data)

    session, account = current_session(), current_account()
    if account is None:
        session = None
    fresh_login = _login_satisfied_by(interaction, session)
    reasons = []

    # Core 3.1.2.3: authenticate when there is no session, when prompt=login or select_account
    # asks for it, or when the session is older than max_age (max_age=0 acts like prompt=login).
    if session is None:
        reasons.append("no session")
    elif not fresh_login:
        if prompts & {"login", "select_account"}:
            reasons.append("prompt=" + " ".join(sorted(prompts & {"login", "select_account"})))
        if max_age is not None and time.time() - session.auth_time > max_age:
            reasons.append("max_age exceeded")

    hint = data.get("id_token_hint")
    if hint:
        hinted = decode_id_token_hint(hint)
        if hinted is None:
            raise InvalidRequestError("id_token_hint is not an ID token issued by this provider")
        if account is not None and not fresh_login and hinted.get("sub") != subject_for(client, account.id):
            # Core 3.1.2.1: the hinted user is not the one logged in.
            reasons.append("id_token_hint names another user")

    if reasons:
        if "none" in prompts:
            raise LoginRequiredError()  # Core 3.1.2.6
        return Decision("login", login_hint=data.get("login_hint"), reasons=reasons)

    need = requirement(data, claims_request, client)
    if not need.met_by(session.acr):
        if fresh_login:
            # The person logged in during this interaction and reached no more: what they reached
            # is enough unless the client must not get less.
            if not need.allows(session.acr):
                raise AccessDeniedError("the authentication level this client requires was not reached")
        else:
            if "none" in prompts:
                raise LoginRequiredError()  # Core 3.1.2.6: the step-up needs the person
            return Decision("login", login_hint=data.get("login_hint"), reasons=["acr below " + need.acr])

    needed_scope = consent_scope(request.scope or "", claims_request)
    consented = interaction is not None and interaction.consent_given
    if not consented:
        if "consent" in prompts:
            reasons.append("prompt=consent")
        elif not is_trusted(client) and not has_consent(account.id, client, needed_scope):
            reasons.append("no consent for " + needed_scope)
    if reasons:
        if "none" in prompts:
            raise ConsentRequiredError()  # Core 3.1.2.6
        return Decision("consent", reasons=reasons)

    return Decision("issue", auth=AuthContext(
        account=account, sid=session.sid, auth_time=session.auth_time, acr=session.acr,
        amr=session.amr or [], claims_request=claims_request,
    ))


# --- interactions ------------------------------------------------------------------------------
def browser_hash() -> str:
    if "bid" not in browser_session:
        browser_session["bid"] = new_secret(16)
    return token_hash(browser_session["bid"])


def start_interaction(grant, prompt: str) -> Interaction:
    data = grant.request.payload.data
    params = data.to_dict() if hasattr(data, "to_dict") else dict(data)
    interaction = Interaction(
        uid=new_secret(24), client_id=grant.request.client.id, params=params, prompt=prompt,
        browser_hash=browser_hash(),
        expires_at=utcnow() + timedelta(seconds=current_app.config["TESSERA_INTERACTION_TTL"]),
    )
    db.session.add(interaction)
    db.session.commit()
    return interaction


def load_interaction(uid: str) -> Interaction | None:
    """The interaction, if it exists, has not expired and belongs to this browser."""
    interaction = db.session.scalar(db.select(Interaction).filter_by(uid=uid or ""))
    if interaction is None or interaction.expires_at <= utcnow():
        return None
    if interaction.browser_hash != browser_hash():
        return None
    return interaction


def complete_login(interaction: Interaction, session: SSOSession) -> None:
    interaction.login_completed_at = session.auth_time
    interaction.pending_account_id = interaction.pending_amr = None
    db.session.commit()


def interaction_requirement(interaction: Interaction) -> Requirement:
    """The assurance the paused request asks for (``app.oidc.assurance.requirement``)."""
    params = interaction.params
    try:
        claims_request = parse_claims_request(params.get("claims")) if params.get("claims") else None
    except (ValueError, json.JSONDecodeError):
        claims_request = None
    return requirement(params, claims_request, interaction.client)


def hold_for_second_factor(interaction: Interaction, account_id: int, amr: list[str]) -> None:
    """The first factor passed: the login waits for the second (``app.mfa``)."""
    interaction.pending_account_id, interaction.pending_amr = account_id, list(amr)
    db.session.commit()


def step_up_only(interaction: Interaction, session: SSOSession | None) -> bool:
    """Whether the browser's live session would do for the paused request but for its assurance
    level: then only the missing factor is asked, not a whole new login."""
    if session is None or interaction.pending_account_id is not None:
        return False
    params = interaction.params
    prompts = set(str(params.get("prompt") or "").split())
    if prompts & {"login", "select_account"} or params.get("id_token_hint"):
        return False
    max_age = params.get("max_age")
    if max_age is not None:
        if not str(max_age).isdigit() or time.time() - session.auth_time > int(max_age):
            return False
    return not interaction_requirement(interaction).met_by(session.acr)


def complete_consent(interaction: Interaction, account_id: int) -> None:
    params = interaction.params
    claims_request = parse_claims_request(params.get("claims")) if params.get("claims") else None
    scope = interaction.client.get_allowed_scope(params.get("scope"))
    grant_consent(account_id, interaction.client, consent_scope(scope, claims_request))
    interaction.consent_given = True
    db.session.commit()


def resumed_request(interaction: Interaction, headers) -> OAuth2Request:
    """Rebuild the paused authorization request from the interaction."""
    request = OAuth2Request("GET", current_app.config["TESSERA_ISSUER"] + "/authorize", headers=headers)
    request.payload = BasicOAuth2Payload(dict(interaction.params))
    return request


def finish_interaction(interaction: Interaction | None) -> None:
    if interaction is not None:
        db.session.delete(interaction)


def requested_scopes(interaction: Interaction) -> list[str]:
    params = interaction.params
    scope = interaction.client.get_allowed_scope(params.get("scope"))
    try:
        claims_request = parse_claims_request(params.get("claims"))
    except (ValueError, json.JSONDecodeError):
        claims_request = None
    return consent_scope(scope, claims_request).split()



def deny_interaction(interaction: Interaction) -> str:
    """The redirect telling the client the user refused (RFC 6749 4.1.2.1 access_denied).
    The redirect URI was checked against the client before the interaction was created."""
    params = [("error", "access_denied"), ("error_description", "The user denied the request")]
    if interaction.params.get("state"):
        params.append(("state", interaction.params["state"]))
    params.append(("iss", current_app.config["TESSERA_ISSUER"]))
    uri = add_params_to_uri(interaction.params["redirect_uri"], params)
    finish_interaction(interaction)
    db.session.commit()
    return uri
