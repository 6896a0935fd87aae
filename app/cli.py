"""The ``tessera`` operator command (a Flask CLI group). Every command has stable flags; those
that print an object take ``--json`` for scripts."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from app.accounts import audit
from app.accounts.service import account_to_dict, create_account, find_identity
from app.bulk_import.cli import import_group
from app.bulk_import.cli_lazy import set_legacy_verify_command
from app.bulk_import.cli_sync import sync_group
from app.cli_support import echo_json, fail, reports_errors
from app.extensions import db
from app.federation.cli import upstreams_group
from app.merging.cli import merges_group
from app.oidc.clients import client_metadata, create_client, get_client, set_client_disabled
from app.oidc.keys import ensure_keys, list_keys, rotate_keys
from app.oidc.models import Client
from app.partners.cli import set_contract_command
from app.security import client_secret_hash
from app.tenants.models import Tenant
from app.tenants.service import create_tenant, set_policy

DEMO = {
    "tenant": {"slug": "demo", "name": "Demo Group", "branding": {"primary_color": "#2f5d8a"}},
    "user": {"phone": "+14155550123", "password": "demo-password", "email": "demo@example.com",
             "name": "Demo User", "nickname": "demo"},
    "clients": [
        {"client_id": "demo-web", "client_secret": "demo-web-GaFskrPhA3NJT3h4W5stOCe4l4_zCH-0", "name": "Demo web site",
         "redirect_uris": ["http://127.0.0.1:5001/callback"],
         "post_logout_redirect_uris": ["http://127.0.0.1:5001/"], "trusted": True},
        {"client_id": "demo-app", "name": "Demo mobile app", "public": True,
         "redirect_uris": ["http://127.0.0.1/callback", "com.example.tessera:/callback"]},
        {"client_id": "demo-partner", "client_secret": "demo-partner-17VRU-RD916EkN9pBXsvsmm8QAV5bc2f", "name": "Demo partner server",
         "redirect_uris": [], "grant_types": ["client_credentials"], "scope": "introspection"},
    ],
}


def create_cli_app():
    from app import create_app, init_migrations

    app = create_app()
    init_migrations(app)
    return app


def build_cli(create_app=create_cli_app) -> FlaskGroup:
    """The ``tessera`` command: Flask's command group around the app ``create_app`` builds, with
    Flask's own commands, the extensions' (``db``, ``limiter``) and Tessera's (``register_commands``).
    Every command and option it has is documented in docs/cli.md (tests/test_docs_cli.py)."""
    return FlaskGroup(create_app=create_app, add_version_option=False, load_dotenv=False,
                      help="Tessera operator commands.")


def main() -> None:
    build_cli().main(prog_name="tessera")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per worker.")
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the hub with gunicorn."""
    args = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--threads", str(threads), "--access-logfile", "-", "app.wsgi:app"]
    os.execvp(args[0], args)


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between polls when idle.")
@with_appcontext
def worker_command(once: bool, interval: float) -> None:
    """Deliver outbox events (back-channel logout tokens, security events) until stopped.
    Run as many as needed: rows are claimed so each event is worked on by one worker at a time."""
    from app.events.service import run_once, run_worker

    if once:
        click.echo(f"attempted {run_once()} deliveries")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("tessera worker: delivering outbox events (Ctrl-C to stop)")
    run_worker(current_app._get_current_object(), stop, interval)


@click.group("demo")
def demo_group() -> None:
    """Demo data for `make run`."""


@demo_group.command("seed")
@with_appcontext
def demo_seed() -> None:
    """Create the demo tenant, user and clients if they do not exist (idempotent)."""
    ensure_keys()
    t = DEMO["tenant"]
    if db.session.scalar(db.select(Tenant).filter_by(slug=t["slug"])) is None:
        create_tenant(t["slug"], t["name"], branding=t["branding"])
    u = DEMO["user"]
    if find_identity(u["phone"]) is None:
        create_account(**u)
    for spec in DEMO["clients"]:
        if get_client(spec["client_id"]) is None:
            create_client(tenant=t["slug"], **spec)
        elif spec.get("client_secret"):
            # A database seeded before the demo secrets were lengthened: the documented one wins.
            client = db.session.scalar(db.select(Client).filter_by(client_id=spec["client_id"]))
            if not client.check_client_secret(spec["client_secret"]):
                client.secret_hash = client_secret_hash(spec["client_secret"])
                db.session.commit()  # every process drops its snapshot of the client (app.caches)
    click.echo("Demo data ready:")
    click.echo(f"  user:    phone {u['phone']} / email {u['email']}, password {u['password']}")
    for spec in DEMO["clients"]:
        secret = f", secret {spec['client_secret']}" if spec.get("client_secret") else " (public, PKCE)"
        click.echo(f"  client:  {spec['client_id']}{secret}")


@click.group("keys")
def keys_group() -> None:
    """Signing keys."""


def _key_dict(row) -> dict:
    return {"kid": row.kid, "alg": row.alg, "state": row.state, "created_at": row.created_at,
            "activated_at": row.activated_at, "retired_at": row.retired_at}


@keys_group.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def keys_rotate(as_json: bool) -> None:
    """current → retired, next → current, and a new next key, for every algorithm."""
    rows = rotate_keys()
    if as_json:
        echo_json([_key_dict(r) for r in rows])
    else:
        click.echo("Rotated. Current keys: " + ", ".join(f"{r.alg} {r.kid}" for r in rows if r.state == "current"))


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def keys_list(as_json: bool) -> None:
    """List signing keys and their states."""
    ensure_keys()
    rows = [_key_dict(r) for r in list_keys()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['kid']}  {r['alg']:6} {r['state']:8} created {r['created_at']:%Y-%m-%d %H:%M}")


@click.group("tenants")
def tenants_group() -> None:
    """Tenants (subsidiaries)."""


@tenants_group.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--color", help="Brand colour of the tenant's pages (#rrggbb).")
@click.option("--logo-uri", help="Logo shown on the tenant's pages.")
@click.option("--login-chain", "login_chain", multiple=True,
              help="client_id of a partner logged in automatically after a login at any site of the tenant.")
@click.option("--trust-all-clients", is_flag=True, help="Every client of the tenant is first-party: no consent page.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def tenants_create(slug, name, color, logo_uri, login_chain, trust_all_clients, as_json) -> None:
    branding = {k: v for k, v in {"primary_color": color, "logo_uri": logo_uri}.items() if v}
    policy = {"login_chain": list(login_chain), "trust_all_clients": trust_all_clients}
    tenant = create_tenant(slug, name, branding=branding, policy=policy)
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"Created tenant {tenant.slug}")


@tenants_group.command("set-login-chain")
@click.option("--slug", required=True)
@click.argument("client_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def tenants_set_login_chain(slug, client_ids, as_json) -> None:
    """Set the partner clients logged in automatically after a login at any site of the tenant."""
    tenant = set_policy(slug, login_chain=list(client_ids))
    if as_json:
        echo_json(tenant.to_dict())
    else:
        click.echo(f"login chain of {slug}: {' '.join(client_ids) or '(none)'}")


@click.group("clients")
def clients_group() -> None:
    """Relying parties and partner servers."""


@clients_group.command("create")
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--public", is_flag=True, help="A public client (native or browser app): PKCE, no secret.")
@click.option("--auth-method", type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]))
@click.option("--subject-type", type=click.Choice(["pairwise", "public"]), default="pairwise", show_default=True)
@click.option("--sector-identifier-uri")
@click.option("--trusted", is_flag=True, help="First-party client: consent is implied.")
@click.option("--grant-type", "grant_types", multiple=True,
              type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]))
@click.option("--scope", help="Space-separated scopes the client may ask for.")
@click.option("--jwks", "jwks_json", help="JWK Set (JSON) of a private_key_jwt client.")
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
@click.option("--backchannel-logout-uri")
@click.option("--frontchannel-logout-uri")
@click.option("--events-endpoint", help="Where Security Event Tokens (account merged) are pushed (RFC 8935).")
@click.option("--initiate-login-uri")
@click.option("--login-chain", "login_chain", multiple=True,
              help="client_id of a partner logged in automatically after a login here (overrides the tenant's list).")
@click.option("--client-id", "fixed_client_id", help="Use this client_id instead of a generated one.")
@click.option("--client-secret", "fixed_client_secret",
              help="Use this client secret (a client moved from another server) instead of a generated one: "
                   "at least 32 random characters and about 128 bits, or it is refused.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def clients_create(tenant, name, redirect_uris, post_logout_redirect_uris, public, auth_method, subject_type,
                   sector_identifier_uri, trusted, grant_types, scope, jwks_json, id_token_alg,
                   backchannel_logout_uri, frontchannel_logout_uri, events_endpoint, initiate_login_uri, login_chain,
                   fixed_client_id, fixed_client_secret, as_json) -> None:
    """Register a client; prints its client_id and, once, its client_secret (generated unless
    --client-secret gives a strong one)."""
    try:
        jwks = json.loads(jwks_json) if jwks_json else None
    except ValueError as exc:
        fail(f"--jwks is not JSON: {exc}")
    registered = create_client(
        tenant=tenant, name=name, redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris), public=public, auth_method=auth_method,
        subject_type=subject_type, sector_identifier_uri=sector_identifier_uri, trusted=trusted,
        grant_types=list(grant_types) or None, scope=scope, jwks=jwks, id_token_signed_response_alg=id_token_alg,
        backchannel_logout_uri=backchannel_logout_uri, frontchannel_logout_uri=frontchannel_logout_uri,
        initiate_login_uri=initiate_login_uri, login_chain=list(login_chain) or None, client_id=fixed_client_id,
        client_secret=fixed_client_secret, events_endpoint=events_endpoint,
    )
    data = client_metadata(registered.client)
    if registered.client_secret:
        data["client_secret"] = registered.client_secret
    if as_json:
        echo_json(data)
    else:
        click.echo(f"client_id:     {data['client_id']}")
        if registered.client_secret:
            click.echo(f"client_secret: {registered.client_secret}   (shown once; only its hash is stored)")


def _set_client_disabled(client_id: str, disabled: bool, as_json: bool) -> None:
    audit.record("client.disabled" if disabled else "client.enabled", actor="operator:cli", client=client_id)
    row = set_client_disabled(client_id, disabled)
    if as_json:
        echo_json(client_metadata(row))
    else:
        click.echo(f"{client_id}: {'disabled' if disabled else 'enabled'}")


@clients_group.command("disable")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def clients_disable(client_id, as_json) -> None:
    """Refuse the client everywhere: no authorization, no token, and its tokens stop working.
    Every hub process honours it within TESSERA_CACHE_CHECK_INTERVAL."""
    _set_client_disabled(client_id, True, as_json)


@clients_group.command("enable")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def clients_enable(client_id, as_json) -> None:
    """Accept a disabled client again."""
    _set_client_disabled(client_id, False, as_json)


@click.group("users")
def users_group() -> None:
    """Accounts."""


@users_group.command("create")
@click.option("--phone", required=True, help="Phone number, E.164 (+8613800138000).")
@click.option("--password", required=True)
@click.option("--email")
@click.option("--name")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
@reports_errors
def users_create(phone, password, email, name, as_json) -> None:
    account = create_account(phone=phone, password=password, email=email, name=name)
    if as_json:
        echo_json(account_to_dict(account))
    else:
        click.echo(f"Created account {account.id}")


def register_commands(app) -> None:
    clients_group.add_command(set_contract_command)
    for command in (serve_command, worker_command, upstreams_group, merges_group, import_group, demo_group, keys_group, tenants_group, clients_group, users_group):
        app.cli.add_command(command)
    app.cli.add_command(sync_group)
    tenants_group.add_command(set_legacy_verify_command)


if __name__ == "__main__":
    main()
