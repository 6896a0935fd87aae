"""The ``tessera`` operator command (a Flask CLI group) and the shell's own commands: ``serve``,
``worker`` and ``demo seed``. The domains' command groups (keys, clients, tenants, users, merges,
upstreams, import, sync) are registered by their ``init_app`` (docs/architecture.md). Every
command has stable flags; those that print an object take ``--json`` for scripts (docs/cli.md)."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from app.accounts.login import find_identity
from app.accounts.profile import create_account
from app.admin.console import ensure_console_client
from app.admin.roles import grant_role, role_of
from app.cli_support import CommandFailed, database_problem
from app.config import load_config
from app.extensions import db
from app.factory import create_app, init_migrations
from app.oidc.clients import create_client, get_client
from app.oidc.keys import ensure_keys
from app.oidc.models import Client
from app.security import client_secret_hash
from app.tenants.models import Tenant
from app.tenants.service import create_tenant
from app.worker import run_once, run_worker

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
    """The app of the ``tessera`` command: the domains' command groups (registered by their
    ``init_app``), the shell's own commands (serve, worker, demo) and the migrations (``db``)."""
    app = create_app()
    for command in (serve_command, worker_command, demo_group):
        app.cli.add_command(command)
    init_migrations(app)
    return app


#: Commands that work without a migrated database: the migrations themselves, the servers, and
#: Flask's and the limiter's commands, which do not read the hub's tables.
WITHOUT_DATABASE = frozenset({"db", "serve", "run", "shell", "routes", "limiter"})


class TesseraGroup(FlaskGroup):
    """Flask's command group, which first checks that the database is migrated before a command
    that uses it runs (not for ``--help``): a missing or empty database is an error that says so,
    exit status 1, instead of an empty SQLite file and a traceback."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        asks_help = any(arg in ("--help", "-h") for arg in rest) or (isinstance(command, click.Group) and not rest)
        if not ctx.resilient_parsing and name not in WITHOUT_DATABASE and not asks_help:
            _check_database(ctx.ensure_object(ScriptInfo).load_app(), as_json="--json" in rest)
        return name, command, rest


def _check_database(app, as_json: bool) -> None:
    with app.app_context():
        problem = database_problem(app.config["SQLALCHEMY_DATABASE_URI"], db.engine, set(db.metadata.tables))
    if problem:
        raise CommandFailed(problem, as_json)


def build_cli(create_app=create_cli_app) -> FlaskGroup:
    """The ``tessera`` command: Flask's command group around the app ``create_app`` builds, with
    Flask's own commands, the extensions' (``db``, ``limiter``) and Tessera's (each domain's and the shell's).
    Every command and option it has is documented in docs/cli.md (tests/test_docs_cli.py)."""
    return TesseraGroup(create_app=create_app, add_version_option=False, load_dotenv=False,
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
    # With TESSERA_LOG_FORMAT=json the hub writes its own JSON access line (app.observability):
    # gunicorn's text access log would only repeat it in another format.
    access_log = [] if load_config()["TESSERA_LOG_FORMAT"] == "json" else ["--access-logfile", "-"]
    args = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--threads", str(threads), *access_log, "app.wsgi:app"]
    os.execvp(args[0], args)


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between polls when idle.")
@with_appcontext
def worker_command(once: bool, interval: float) -> None:
    """Run the periodic jobs and deliver outbox events (back-channel logout tokens, security events)
    until stopped. Run as many as needed: rows are claimed so each event is worked on by one worker
    at a time."""
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
    # The admin console (/admin) works out of the box: its client, and the demo user a super admin.
    console_client, _ = ensure_console_client(t["slug"], actor="operator:demo-seed")
    demo_user = find_identity(u["phone"]).account_id
    if role_of(demo_user) is None:
        grant_role(demo_user, "super", actor="operator:demo-seed")
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
    click.echo(f"  admin:   the demo user is a super admin of the console at /admin (client {console_client})")


if __name__ == "__main__":
    main()
