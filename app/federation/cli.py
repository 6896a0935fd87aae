"""`tessera upstreams …`: operators configure upstream identity providers: create, list, update,
disable and enable them (``app.federation.providers``; writes audited, actor ``operator:cli``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, json_option, reports_errors
from app.federation.models import MATCHING_MODES
from app.federation.providers import (
    callback_uri, create_provider, list_providers, parse_claim_mapping, provider_to_dict, set_provider_enabled,
    update_provider,
)

ACTOR = "operator:cli"


@click.group("upstreams")
def upstreams_group() -> None:
    """Upstream identity providers (login with another OpenID Connect or OAuth 2.0 provider)."""


@upstreams_group.command("create")
@click.option("--slug", required=True, help="Short name, used in URLs: /upstream/<slug>/callback.")
@click.option("--name", required=True, help="Shown on the login button.")
@click.option("--discovery-url", help="OpenID Connect provider: its issuer or its /.well-known/openid-configuration URL.")
@click.option("--authorization-endpoint", help="OAuth 2.0 provider (no discovery): authorization endpoint.")
@click.option("--token-endpoint", help="OAuth 2.0 provider: token endpoint.")
@click.option("--userinfo-endpoint", help="OAuth 2.0 provider: userinfo endpoint (who logged in).")
@click.option("--client-id", required=True, help="The client_id the upstream gave the hub.")
@click.option("--client-secret", help="The client secret (stored encrypted).")
@click.option("--scope", help="Scopes to ask for (default for OpenID Connect: openid profile email phone).")
@click.option("--claim-map", "claim_map", multiple=True, metavar="UPSTREAM=OURS",
              help="Map an upstream claim to ours, e.g. openid=sub unionid=unionid nickname=name (repeatable).")
@click.option("--platform", help="Providers of one platform share unionids (e.g. the WeChat apps of one developer account).")
@click.option("--matching", "matching_mode", type=click.Choice(MATCHING_MODES), default="never", show_default=True,
              help="May a first login suggest an existing account with the same verified phone/email (still needing its proof)?")
@json_option
@with_appcontext
@reports_errors
def upstreams_create(slug, name, discovery_url, authorization_endpoint, token_endpoint, userinfo_endpoint, client_id,
                     client_secret, scope, claim_map, platform, matching_mode, as_json) -> None:
    """Configure an upstream identity provider. Register the hub at the upstream with the
    redirect URI <issuer>/upstream/<slug>/callback."""
    if not discovery_url and not (authorization_endpoint and token_endpoint and userinfo_endpoint):
        raise click.UsageError("give --discovery-url, or --authorization-endpoint, --token-endpoint and --userinfo-endpoint")
    provider = create_provider(
        slug=slug, name=name, discovery_url=discovery_url, authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint, userinfo_endpoint=userinfo_endpoint, client_id=client_id,
        client_secret=client_secret, scope=scope, claim_mapping=parse_claim_mapping(claim_map),
        platform=platform, matching_mode=matching_mode,
    )
    data = provider_to_dict(provider)
    data["redirect_uri"] = callback_uri(provider)
    if as_json:
        echo_json(data)
    else:
        click.echo(f"Created upstream {provider.slug} ({provider.kind})")
        click.echo(f"  register this redirect URI at the upstream: {data['redirect_uri']}")


@upstreams_group.command("list")
@json_option
@with_appcontext
def upstreams_list(as_json: bool) -> None:
    """List the configured upstream identity providers (secrets are never shown)."""
    rows = [provider_to_dict(p) for p in list_providers()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        state = "" if r["enabled"] else "  (disabled)"
        platform = f" platform={r['platform']}" if r["platform"] else ""
        click.echo(f"{r['slug']:16} {r['kind']:6} {r['name']}  matching={r['matching_mode']}{platform}{state}")


@upstreams_group.command("update")
@click.argument("slug")
@click.option("--name", help="Shown on the login button.")
@click.option("--discovery-url", help="OpenID Connect upstream: read its discovery document again (same issuer).")
@click.option("--authorization-endpoint", help="OAuth 2.0 upstream: authorization endpoint.")
@click.option("--token-endpoint", help="OAuth 2.0 upstream: token endpoint.")
@click.option("--userinfo-endpoint", help="Userinfo endpoint (OpenID Connect: an override; \"\" removes it).")
@click.option("--client-id", help="The client_id the upstream gave the hub.")
@click.option("--client-secret", help="A new client secret (stored encrypted).")
@click.option("--no-client-secret", is_flag=True, help="Remove the client secret.")
@click.option("--scope", help="Scopes to ask for (replaces them).")
@click.option("--claim-map", "claim_map", multiple=True, metavar="UPSTREAM=OURS",
              help="Repeatable; replaces the claim mapping.")
@click.option("--platform", help='Platform whose unionids it shares ("" removes it).')
@click.option("--matching", "matching_mode", type=click.Choice(MATCHING_MODES),
              help="May a first login suggest an existing account with the same verified phone/email?")
@json_option
@with_appcontext
@reports_errors
def upstreams_update(slug, name, discovery_url, authorization_endpoint, token_endpoint, userinfo_endpoint, client_id,
                     client_secret, no_client_secret, scope, claim_map, platform, matching_mode, as_json) -> None:
    """Change the given fields of an upstream, checked as create checks them; others stay."""
    if no_client_secret and client_secret is not None:
        raise click.UsageError("--no-client-secret and --client-secret exclude each other")
    provider = update_provider(
        slug, actor=ACTOR, name=name, discovery_url=discovery_url, authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint, userinfo_endpoint=userinfo_endpoint, client_id=client_id,
        client_secret="" if no_client_secret else client_secret, scope=scope,
        claim_mapping=parse_claim_mapping(claim_map) if claim_map else None, platform=platform,
        matching_mode=matching_mode,
    )
    if as_json:
        echo_json(provider_to_dict(provider))
    else:
        click.echo(f"{slug}: updated")


def _set_enabled(slug: str, enabled: bool, as_json: bool) -> None:
    provider, dropped = set_provider_enabled(slug, enabled, actor=ACTOR)
    if as_json:
        echo_json({**provider_to_dict(provider), "pending_logins_dropped": dropped})
    else:
        click.echo(f"{slug}: {'enabled' if enabled else 'disabled'}"
                   + (f" ({dropped} pending logins dropped)" if dropped else ""))


@upstreams_group.command("disable")
@click.argument("slug")
@json_option
@with_appcontext
@reports_errors
def upstreams_disable(slug, as_json) -> None:
    """Stop logins with an upstream: no button, its callback refuses; linked identities stay."""
    _set_enabled(slug, False, as_json)


@upstreams_group.command("enable")
@click.argument("slug")
@json_option
@with_appcontext
@reports_errors
def upstreams_enable(slug, as_json) -> None:
    """Offer logins with a disabled upstream again."""
    _set_enabled(slug, True, as_json)
