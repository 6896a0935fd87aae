"""Configuring upstream identity providers (``tessera upstreams``, later the admin API): create,
update, disable and enable them; OpenID Connect discovery, the claim mapping, and the redirect URI
the hub registers at the upstream.

A provider is ``oidc`` when it is configured from a discovery URL (its ID tokens say who logged
in), else ``oauth2``: endpoints given, a userinfo endpoint, and a claim mapping naming the subject.
Every URL is https (http only with ``TESSERA_ALLOW_PRIVATE_OUTBOUND``); the client secret is
stored encrypted and never shown.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func

from app import audit
from app.accounts.models import Identity
from app.crypto import encrypt_json
from app.errors import Conflict, InvalidInput, NotFound
from app.extensions import db
from app.federation.models import MATCHING_MODES, PendingUpstreamLogin, UpstreamProvider
from app.net import OutboundError, fetch

KINDS = ("oidc", "oauth2")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
DEFAULT_OIDC_SCOPE = "openid profile email phone"
#: Claims we keep from an upstream (after the claim mapping); the rest is dropped.
KEPT_CLAIMS = {"sub", "unionid", "name", "nickname", "preferred_username", "given_name", "family_name",
               "picture", "locale", "email", "email_verified", "phone_number", "phone_number_verified"}


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


def _check_name(name: str | None) -> str:
    if not (name or "").strip():
        raise InvalidInput("a provider needs a name")
    return name.strip()


def _check_client_id(client_id: str | None) -> str:
    if not (client_id or "").strip():
        raise InvalidInput("a provider needs the client_id the upstream gave the hub")
    return client_id.strip()


def _check_matching_mode(matching_mode: str) -> str:
    if matching_mode not in MATCHING_MODES:
        raise InvalidInput(f"matching mode must be one of {', '.join(MATCHING_MODES)}")
    return matching_mode


def _check_platform(platform: str | None) -> str | None:
    if platform is not None and not SLUG_RE.match(platform):
        raise InvalidInput("platform must be 1-63 lowercase letters, digits or dashes")
    return platform


def _discovered(discovery_url: str, userinfo_endpoint: str | None) -> dict:
    """The columns an OpenID Connect provider takes from its discovery document."""
    metadata = discover(discovery_url)
    return {"issuer": metadata["issuer"], "authorization_endpoint": metadata["authorization_endpoint"],
            "token_endpoint": metadata["token_endpoint"], "jwks_uri": metadata["jwks_uri"],
            "userinfo_endpoint": userinfo_endpoint or metadata.get("userinfo_endpoint")}


def _check_kind_rules(kind: str, scope: str, claim_mapping: dict) -> None:
    if kind == "oidc" and "openid" not in scope.split():
        raise InvalidInput("an OpenID Connect upstream needs the openid scope")
    # Without an ID token, who logged in is only known from the userinfo endpoint.
    if kind == "oauth2" and "sub" not in claim_mapping.values():
        raise InvalidInput("an OAuth 2.0 upstream needs a claim mapping to sub (e.g. openid=sub)")


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
    provider = UpstreamProvider(
        slug=slug, name=_check_name(name), client_id=_check_client_id(client_id),
        claim_mapping=dict(claim_mapping or {}), platform=_check_platform(platform),
        matching_mode=_check_matching_mode(matching_mode),
        client_secret_encrypted=encrypt_json(client_secret) if client_secret else None,
    )
    if db.session.scalar(db.select(UpstreamProvider.id).filter_by(slug=slug)):
        raise Conflict(f"upstream {slug!r} already exists")
    if discovery_url:
        if authorization_endpoint or token_endpoint:
            raise InvalidInput("give either a discovery URL or the endpoints, not both")
        provider.kind, provider.scope = "oidc", scope or DEFAULT_OIDC_SCOPE
        for field, value in _discovered(discovery_url, userinfo_endpoint).items():
            setattr(provider, field, value)
    else:
        provider.kind, provider.scope = "oauth2", scope or ""
        provider.authorization_endpoint = _check_url(authorization_endpoint, "--authorization-endpoint")
        provider.token_endpoint = _check_url(token_endpoint, "--token-endpoint")
        provider.userinfo_endpoint = _check_url(userinfo_endpoint, "--userinfo-endpoint")
    _check_kind_rules(provider.kind, provider.scope, provider.claim_mapping)
    db.session.add(provider)
    db.session.commit()
    return provider


def update_provider(
    slug: str, *, actor: str, name: str | None = None, client_id: str | None = None,
    client_secret: str | None = None, discovery_url: str | None = None, authorization_endpoint: str | None = None,
    token_endpoint: str | None = None, userinfo_endpoint: str | None = None, scope: str | None = None,
    claim_mapping: dict | None = None, platform: str | None = None, matching_mode: str | None = None,
) -> UpstreamProvider:
    """Change the given fields of an upstream (None leaves one as it is), checked as ``create``
    checks them: the client secret is stored encrypted ("" removes it, as ``platform`` "" does),
    a discovery URL is fetched again. What its linked identities mean stays: the kind (``oidc`` or
    ``oauth2``) never changes, nor an OpenID Connect upstream's issuer, nor — once identities are
    linked — the upstream claim an OAuth 2.0 upstream maps to ``sub``. Audited as
    ``upstream.updated`` with the names of the fields changed (never a secret)."""
    given = dict(name=name, client_id=client_id, client_secret=client_secret, discovery_url=discovery_url,
                 authorization_endpoint=authorization_endpoint, token_endpoint=token_endpoint,
                 userinfo_endpoint=userinfo_endpoint, scope=scope, claim_mapping=claim_mapping, platform=platform,
                 matching_mode=matching_mode)
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        raise InvalidInput("nothing to change: give at least one field")
    provider = load_provider(slug)
    values = _checked_update(provider, given)
    _check_kind_rules(provider.kind, values.get("scope", provider.scope),
                      values.get("claim_mapping", provider.claim_mapping or {}))
    if "claim_mapping" in values:
        _keep_subject_claim(provider, values["claim_mapping"])
    for field, value in values.items():
        setattr(provider, field, value)
    audit.record("upstream.updated", actor=actor, upstream=slug, changed=sorted(given))
    db.session.commit()
    return provider


def _checked_update(provider: UpstreamProvider, given: dict) -> dict:
    """The columns ``given`` changes, each checked."""
    values: dict = {}
    if "name" in given:
        values["name"] = _check_name(given["name"])
    if "client_id" in given:
        values["client_id"] = _check_client_id(given["client_id"])
    if "client_secret" in given:
        values["client_secret_encrypted"] = encrypt_json(given["client_secret"]) if given["client_secret"] else None
    if "matching_mode" in given:
        values["matching_mode"] = _check_matching_mode(given["matching_mode"])
    if "platform" in given:
        values["platform"] = _check_platform(given["platform"] or None)
    if "claim_mapping" in given:
        values["claim_mapping"] = dict(given["claim_mapping"])
    if "scope" in given:
        values["scope"] = " ".join(given["scope"].split())
    if provider.kind == "oidc":
        if "authorization_endpoint" in given or "token_endpoint" in given:
            raise InvalidInput("an OpenID Connect upstream's endpoints come from its discovery document: "
                               "give --discovery-url to read it again")
        if "discovery_url" in given:
            discovered = _discovered(given["discovery_url"], given.get("userinfo_endpoint") or None)
            if discovered["issuer"] != provider.issuer:
                raise Conflict(f"the discovery document names the issuer {discovered['issuer']!r}, not this "
                               f"upstream's {provider.issuer!r}: its subjects would name other people "
                               "(configure a new upstream)")
            values.update(discovered)
        elif "userinfo_endpoint" in given:
            values["userinfo_endpoint"] = _check_url(given["userinfo_endpoint"], "--userinfo-endpoint", required=False)
    else:
        if "discovery_url" in given:
            raise InvalidInput(f"upstream {provider.slug!r} is a plain OAuth 2.0 provider: its kind cannot change "
                               "(configure a new upstream)")
        for field in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
            if field in given:
                values[field] = _check_url(given[field], f"--{field.replace('_', '-')}")
    return values


def _keep_subject_claim(provider: UpstreamProvider, claim_mapping: dict) -> None:
    """An OAuth 2.0 upstream's subject is the upstream claim mapped to ``sub``: once identities
    are linked to it, another claim would make their subjects name other people."""
    if provider.kind != "oauth2":
        return
    before = {up for up, ours in (provider.claim_mapping or {}).items() if ours == "sub"}
    after = {up for up, ours in claim_mapping.items() if ours == "sub"}
    linked = db.session.scalar(db.select(func.count(Identity.id)).filter_by(kind="upstream", namespace=provider.slug))
    if before != after and linked:
        raise Conflict(f"{linked} identities are linked to upstream {provider.slug!r} by its "
                       f"{', '.join(sorted(before))} claim: the claim mapped to sub cannot change "
                       "(configure a new upstream)")


def set_provider_enabled(slug: str, enabled: bool, *, actor: str) -> tuple[UpstreamProvider, int]:
    """Disable an upstream (its button leaves the login pages, its start and callback refuse, and
    the logins it left pending are dropped) or enable it again. Linked identities stay. Returns
    the provider and how many pending logins were dropped. Audited as ``upstream.disabled`` /
    ``upstream.enabled`` (also when it was so already: nothing else changes then)."""
    provider = load_provider(slug)
    dropped = 0
    provider.enabled = enabled
    if not enabled:
        dropped = db.session.execute(
            db.delete(PendingUpstreamLogin).where(PendingUpstreamLogin.provider_id == provider.id)).rowcount
    audit.record("upstream.enabled" if enabled else "upstream.disabled", actor=actor, upstream=slug,
                 **({} if enabled else {"pending_logins_dropped": dropped}))
    db.session.commit()
    return provider, dropped


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


def load_provider(slug: str) -> UpstreamProvider:
    """An upstream by slug, enabled or not (operators)."""
    provider = db.session.scalar(db.select(UpstreamProvider).filter_by(slug=slug or ""))
    if provider is None:
        raise NotFound(f"no upstream {slug!r}")
    return provider


def get_provider(slug: str) -> UpstreamProvider:
    """An enabled upstream by slug (logins): a disabled one is refused like an unknown one."""
    provider = load_provider(slug)
    if not provider.enabled:
        raise NotFound(f"logging in with {provider.name} is turned off")
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


def callback_uri(provider: UpstreamProvider) -> str:
    return f"{current_app.config['TESSERA_ISSUER']}/upstream/{provider.slug}/callback"
