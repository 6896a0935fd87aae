"""Configuring upstream identity providers (``tessera upstreams``): OpenID Connect discovery, the
claim mapping, and the redirect URI the hub registers at the upstream.

A provider is ``oidc`` when it is configured from a discovery URL (its ID tokens say who logged
in), else ``oauth2``: endpoints given, a userinfo endpoint, and a claim mapping naming the subject.
Every URL is https (http only with ``TESSERA_ALLOW_PRIVATE_OUTBOUND``); the client secret is
stored encrypted and never shown.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app

from app.crypto import encrypt_json
from app.errors import Conflict, InvalidInput, NotFound
from app.extensions import db
from app.federation.models import MATCHING_MODES, UpstreamProvider
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


def callback_uri(provider: UpstreamProvider) -> str:
    return f"{current_app.config['TESSERA_ISSUER']}/upstream/{provider.slug}/callback"
