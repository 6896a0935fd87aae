"""Upstream identity providers: configuration (``tessera upstreams``), the authorization-code
round trip to them, and what an upstream login resolves to.

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

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote_plus, urlsplit

from authlib.common.urls import add_params_to_uri
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.identifiers import normalize_email, normalize_phone
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.accounts.login import get_active_account, mark_login
from app.accounts.otp import send_code, verify_code
from app.crypto import decrypt_json, encrypt_json
from app.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound, TesseraError
from app.extensions import db
from app.federation.models import MATCHING_MODES, PendingUpstreamLogin, UpstreamProvider
from app.net import OutboundError, fetch
from app.security import new_secret, utcnow

KINDS = ("oidc", "oauth2")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
DEFAULT_OIDC_SCOPE = "openid profile email phone"
#: Signature algorithms accepted on upstream ID tokens ("none" and HMAC never: OIDC Core 10.1).
ID_TOKEN_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
#: Seconds of clock skew tolerated on upstream ID tokens.
CLOCK_SKEW = 60
#: Claims we keep from an upstream (after the claim mapping); the rest is dropped.
KEPT_CLAIMS = {"sub", "unionid", "name", "nickname", "preferred_username", "given_name", "family_name",
               "picture", "locale", "email", "email_verified", "phone_number", "phone_number_verified"}


class UpstreamError(TesseraError):
    """The upstream answered an error, or something it sent cannot be trusted."""

    status = 502
    title = "Upstream login failed"


# --- configuration -------------------------------------------------------------------------------

def _check_url(url: str | None, what: str, required: bool = True) -> str | None:
    if not url:
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    parts = urlsplit(url)
    allow_http = current_app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"]
    if not parts.hostname or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise InvalidInput(f"{what} must be an https URL: {url!r}")
    return url


def discover(discovery_url: str) -> dict:
    """Fetch and check an OpenID Provider's metadata (OpenID Connect Discovery 1.0)."""
    if not discovery_url.endswith(DISCOVERY_SUFFIX):
        discovery_url = discovery_url.rstrip("/") + DISCOVERY_SUFFIX
    _check_url(discovery_url, "the discovery URL")
    expected_issuer = discovery_url[: -len(DISCOVERY_SUFFIX)]
    try:
        response = fetch("GET", discovery_url, headers={"Accept": "application/json"})
        metadata = response.json() if response.status_code == 200 else None
    except (OutboundError, ValueError) as exc:
        raise InvalidInput(f"the discovery document could not be fetched: {exc}") from None
    if not isinstance(metadata, dict):
        raise InvalidInput(f"the discovery document could not be fetched (HTTP {response.status_code})")
    # Discovery 4.3: the issuer in the document is exactly the URL it was fetched under.
    if metadata.get("issuer") != expected_issuer:
        raise InvalidInput(f"the discovery document's issuer {metadata.get('issuer')!r} is not {expected_issuer!r}")
    for member in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        _check_url(metadata.get(member), f"the discovery document's {member}")
    _check_url(metadata.get("userinfo_endpoint"), "the discovery document's userinfo_endpoint", required=False)
    return metadata


def create_provider(
    *, slug: str, name: str, client_id: str, client_secret: str | None, discovery_url: str | None = None,
    authorization_endpoint: str | None = None, token_endpoint: str | None = None,
    userinfo_endpoint: str | None = None, scope: str | None = None, claim_mapping: dict | None = None,
    platform: str | None = None, matching_mode: str = "never",
) -> UpstreamProvider:
    """Configure an upstream: ``oidc`` when a discovery URL is given, else ``oauth2`` (endpoints
    given, a userinfo endpoint and a claim mapping naming the subject)."""
    if not SLUG_RE.match(slug or ""):
        raise InvalidInput("slug must be 1-63 lowercase letters, digits or dashes")
    if not (name or "").strip():
        raise InvalidInput("a provider needs a name")
    if not (client_id or "").strip():
        raise InvalidInput("a provider needs the client_id the upstream gave the hub")
    if matching_mode not in MATCHING_MODES:
        raise InvalidInput(f"matching mode must be one of {', '.join(MATCHING_MODES)}")
    if platform is not None and not SLUG_RE.match(platform):
        raise InvalidInput("platform must be 1-63 lowercase letters, digits or dashes")
    claim_mapping = dict(claim_mapping or {})
    if db.session.scalar(db.select(UpstreamProvider.id).filter_by(slug=slug)):
        raise Conflict(f"upstream {slug!r} already exists")

    provider = UpstreamProvider(
        slug=slug, name=name.strip(), client_id=client_id.strip(), claim_mapping=claim_mapping,
        platform=platform, matching_mode=matching_mode,
        client_secret_encrypted=encrypt_json(client_secret) if client_secret else None,
    )
    if discovery_url:
        if authorization_endpoint or token_endpoint:
            raise InvalidInput("give either a discovery URL or the endpoints, not both")
        metadata = discover(discovery_url)
        provider.kind = "oidc"
        provider.issuer = metadata["issuer"]
        provider.authorization_endpoint = metadata["authorization_endpoint"]
        provider.token_endpoint = metadata["token_endpoint"]
        provider.userinfo_endpoint = userinfo_endpoint or metadata.get("userinfo_endpoint")
        provider.jwks_uri = metadata["jwks_uri"]
        provider.scope = scope or DEFAULT_OIDC_SCOPE
        if "openid" not in provider.scope.split():
            raise InvalidInput("an OpenID Connect upstream needs the openid scope")
    else:
        provider.kind = "oauth2"
        provider.authorization_endpoint = _check_url(authorization_endpoint, "--authorization-endpoint")
        provider.token_endpoint = _check_url(token_endpoint, "--token-endpoint")
        # Without an ID token, who logged in is only known from the userinfo endpoint.
        provider.userinfo_endpoint = _check_url(userinfo_endpoint, "--userinfo-endpoint")
        if "sub" not in claim_mapping.values():
            raise InvalidInput("an OAuth 2.0 upstream needs a claim mapping to sub (e.g. openid=sub)")
        provider.scope = scope or ""
    db.session.add(provider)
    db.session.commit()
    return provider


def parse_claim_mapping(pairs) -> dict:
    """``["openid=sub", "nickname=name"]`` → ``{"openid": "sub", "nickname": "name"}`` (upstream → ours)."""
    mapping = {}
    for pair in pairs or ():
        upstream, sep, ours = pair.partition("=")
        if not sep or not upstream.strip() or not ours.strip():
            raise InvalidInput(f"a claim mapping is upstream=ours, not {pair!r}")
        if ours.strip() not in KEPT_CLAIMS:
            raise InvalidInput(f"cannot map to {ours.strip()!r}: one of {', '.join(sorted(KEPT_CLAIMS))}")
        mapping[upstream.strip()] = ours.strip()
    return mapping


def list_providers(enabled_only: bool = False) -> list[UpstreamProvider]:
    query = db.select(UpstreamProvider).order_by(UpstreamProvider.name, UpstreamProvider.slug)
    if enabled_only:
        query = query.filter_by(enabled=True)
    return list(db.session.scalars(query))


def get_provider(slug: str) -> UpstreamProvider:
    provider = db.session.scalar(db.select(UpstreamProvider).filter_by(slug=slug or "", enabled=True))
    if provider is None:
        raise NotFound(f"no upstream {slug!r}")
    return provider


def provider_to_dict(provider: UpstreamProvider) -> dict:
    """Everything but the secret."""
    return {
        "slug": provider.slug, "name": provider.name, "kind": provider.kind, "issuer": provider.issuer,
        "authorization_endpoint": provider.authorization_endpoint, "token_endpoint": provider.token_endpoint,
        "userinfo_endpoint": provider.userinfo_endpoint, "jwks_uri": provider.jwks_uri,
        "client_id": provider.client_id, "has_client_secret": bool(provider.client_secret_encrypted),
        "scope": provider.scope, "claim_mapping": provider.claim_mapping or {}, "platform": provider.platform,
        "matching_mode": provider.matching_mode, "enabled": provider.enabled, "created_at": provider.created_at,
    }


# --- the round trip to the upstream -------------------------------------------------------------

@dataclass
class UpstreamRequest:
    """An authorization request sent to an upstream; ``state`` names it when the browser returns."""

    url: str
    state: str
    nonce: str | None
    code_verifier: str


def callback_uri(provider: UpstreamProvider) -> str:
    return f"{current_app.config['TESSERA_ISSUER']}/upstream/{provider.slug}/callback"


def authorization_request(provider: UpstreamProvider) -> UpstreamRequest:
    """RFC 6749 4.1.1 with PKCE S256 (RFC 7636 4.2), a state and, for OpenID Connect, a nonce."""
    state, verifier = new_secret(24), new_secret(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = [("response_type", "code"), ("client_id", provider.client_id),
              ("redirect_uri", callback_uri(provider))]
    if provider.scope:
        params.append(("scope", provider.scope))
    params += [("state", state), ("code_challenge", challenge), ("code_challenge_method", "S256")]
    nonce = None
    if provider.kind == "oidc":
        nonce = new_secret(24)
        params.append(("nonce", nonce))
    return UpstreamRequest(add_params_to_uri(provider.authorization_endpoint, params), state, nonce, verifier)


@dataclass
class UpstreamUser:
    """Who the upstream says logged in, after the claim mapping."""

    subject: str
    unionid: str | None
    claims: dict


def _json(response, what: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(f"the upstream's {what} answered HTTP {response.status_code} without a JSON object")
    return data


def _exchange_code(provider: UpstreamProvider, code: str, code_verifier: str) -> dict:
    secret = decrypt_json(provider.client_secret_encrypted) if provider.client_secret_encrypted else None
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_uri(provider),
            "code_verifier": code_verifier}
    kwargs = {}
    if secret is None:
        data["client_id"] = provider.client_id
    else:
        # RFC 6749 2.3.1: client_secret_basic, both parts form-encoded first.
        kwargs["auth"] = (quote_plus(provider.client_id), quote_plus(secret))
    response = fetch("POST", provider.token_endpoint, data=data, headers={"Accept": "application/json"}, **kwargs)
    token = _json(response, "token endpoint")
    if response.status_code != 200 or "error" in token or token.get("errcode"):  # WeChat: errors with HTTP 200
        raise UpstreamError(f"the upstream refused the code: {token.get('error') or token.get('errmsg') or response.status_code}"
                            + (f" ({token['error_description']})" if token.get("error_description") else ""))
    if not token.get("access_token"):
        raise UpstreamError("the upstream's token response has no access_token")
    return token


def _validate_id_token(provider: UpstreamProvider, id_token: str, nonce: str | None) -> dict:
    """OIDC Core 3.1.3.7: signature by the upstream's published keys, iss, aud (and azp), exp,
    iat, nonce."""
    jwks = _json(fetch("GET", provider.jwks_uri, headers={"Accept": "application/json"}), "jwks_uri")
    try:
        key_set = KeySet.import_key_set(jwks)
        token = jwt.decode(id_token, key_set, algorithms=ID_TOKEN_ALGS)
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW,
            iss={"essential": True, "value": provider.issuer},
            sub={"essential": True},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise UpstreamError(f"the upstream's ID token is not valid: {exc}") from None
    claims = token.claims
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise UpstreamError("the upstream's ID token is meant for another party (azp)")
    return claims


def _userinfo(provider: UpstreamProvider, access_token: str) -> dict:
    response = fetch("GET", provider.userinfo_endpoint,
                     headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
    info = _json(response, "userinfo endpoint")
    if response.status_code != 200 or info.get("errcode"):  # WeChat answers errors with HTTP 200
        raise UpstreamError(f"the upstream's userinfo endpoint refused: {info.get('error') or info.get('errmsg') or response.status_code}")
    return info


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _mapped_claims(provider: UpstreamProvider, raw: dict) -> dict:
    claims = {k: v for k, v in raw.items() if k in KEPT_CLAIMS}
    for upstream, ours in (provider.claim_mapping or {}).items():
        if raw.get(upstream) not in (None, ""):
            claims[ours] = raw[upstream]
    for flag in ("email_verified", "phone_number_verified"):
        if flag in claims:
            claims[flag] = _truthy(claims[flag])
    return {k: v for k, v in claims.items() if isinstance(v, (str, bool, int))}


def finish_upstream_login(provider: UpstreamProvider, code: str, pending: UpstreamRequest) -> UpstreamUser:
    """Exchange the code and find out who logged in. Raises UpstreamError (or OutboundError when
    an endpoint is not reachable or not allowed)."""
    token = _exchange_code(provider, code, pending.code_verifier)
    raw: dict = {}
    if provider.kind == "oidc":
        if not token.get("id_token"):
            raise UpstreamError("the upstream's token response has no ID token")
        raw.update(_validate_id_token(provider, token["id_token"], pending.nonce))
    if provider.userinfo_endpoint:
        info = _userinfo(provider, token["access_token"])
        if provider.kind == "oidc" and info.get("sub") != raw["sub"]:
            # OIDC Core 5.3.2: the UserInfo sub must be the ID token's.
            raise UpstreamError("the upstream's userinfo is about another subject")
        raw.update(info)
    claims = _mapped_claims(provider, raw)
    subject = str(claims.pop("sub", "") or "")
    unionid = str(claims.pop("unionid", "") or "") or None
    if not subject:
        raise UpstreamError("the upstream did not say who logged in (no subject)")
    if len(subject) > 255 or (unionid and len(unionid) > 255):
        raise UpstreamError("the upstream's subject is too long")
    return UpstreamUser(subject=subject, unionid=unionid, claims=claims)


# --- resolution --------------------------------------------------------------------------------

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
    """The pending login, if it exists, has not expired and belongs to this browser."""
    pending = db.session.scalar(db.select(PendingUpstreamLogin).filter_by(uid=uid or ""))
    if pending is None or pending.expires_at <= utcnow() or pending.browser_hash != browser_hash:
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
