"""`tessera users …` (accounts: create, search, show, lock, unlock, log out, reset a password,
revoke consents and tokens, close, export) and `tessera audit search` (the audit log): thin
commands over app.accounts.operators, operator_actions, data_export and app.audit. Registered by
``app.accounts.wiring``."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click
from flask.cli import with_appcontext

from app import audit
from app.accounts import data_export, operator_actions, operators
from app.accounts.profile import account_to_dict, create_account
from app.cli_support import echo_json, echo_json_lines, fail, json_option, reports_errors

ACCOUNT_HELP = "Account id, or a phone or email that identifies it."


@click.group("users")
def users_group() -> None:
    """Accounts."""


@users_group.command("create")
@click.option("--phone", required=True, help="Phone number, E.164 (+8613800138000).")
@click.option("--password", required=True)
@click.option("--email")
@click.option("--name")
@json_option
@with_appcontext
@reports_errors
def users_create(phone, password, email, name, as_json) -> None:
    account = create_account(phone=phone, password=password, email=email, name=name)
    if as_json:
        echo_json(account_to_dict(account))
    else:
        click.echo(f"Created account {account.id}")


def _summary_line(row: dict) -> str:
    return f"{row['id']:>8}  {row['status']:7} {row['name'] or '-':20}  {' '.join(row['identities'])}"


@users_group.command("search")
@click.option("--phone")
@click.option("--email")
@click.option("--username", help="A username at --tenant.")
@click.option("--name", help="Part of the name (case-insensitive).")
@click.option("--sub", help="A subject --client holds.")
@click.option("--legacy-id", help="A legacy id of --tenant.")
@click.option("--tenant", help="Tenant slug (with --username or --legacy-id).")
@click.option("--client", help="client_id (with --sub).")
@json_option
@with_appcontext
@reports_errors
def users_search(phone, email, username, name, sub, legacy_id, tenant, client, as_json) -> None:
    """Find accounts by one identifier, a subject, a legacy id or a name."""
    rows = [operators.account_summary(a) for a in operators.search_accounts(
        phone=phone, email=email, username=username, tenant=tenant, name=name, sub=sub, client=client,
        legacy_id=legacy_id)]
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no account found")
    for row in [] if as_json else rows:
        click.echo(_summary_line(row))


@users_group.command("show")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def users_show(account, as_json) -> None:
    """An account: identities, live sessions, consents, merges, recent audit events."""
    data = operators.account_overview(operators.resolve_account(account))
    if as_json:
        echo_json(data)
        return
    click.echo(_summary_line(data) + ("" if data["can_log_in"] else "  (no way to log in)"))
    for title, key, fmt in _SECTIONS:
        click.echo(f"{title}:")
        for item in data[key]:
            click.echo("  " + fmt(item))


_SECTIONS = (
    ("identities", "identities", lambda i: f"{i['kind']}:{i['value']}" + ("" if i["verified"] else " (unverified)")
     + (f" released {i['released_at']:%Y-%m-%d}" if i["released_at"] else "")),
    ("sessions", "sessions", lambda s: f"{s['sid'][:12]}… since {s['created_at']:%Y-%m-%d %H:%M} from {s['ip_address'] or '-'}"),
    ("consents", "consents", lambda c: f"{c['client']}: {c['scope']}"),
    ("merges", "merges", lambda m: f"merge {m['id']}: {m['absorbed']} → {m['survivor']} {m['status']}"),
    ("events", "events", lambda e: f"{e['at']:%Y-%m-%d %H:%M}  {e['kind']}  {e['actor'] or '-'}"),
)


def _act(action, account: str, as_json: bool, done: str, **kwargs) -> None:
    result = action(account, **kwargs)
    row = operators.account_summary(result) if not isinstance(result, int) else None
    if as_json:
        echo_json(row if row is not None else {"sessions_ended": result})
    else:
        click.echo(done.format(result=result, account=account))


@users_group.command("lock")
@click.argument("account")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@json_option
@with_appcontext
@reports_errors
def users_lock(account, reason, as_json) -> None:
    """Lock an account: no login, its sessions end, its clients are told."""
    _act(operators.lock, account, as_json, "account {result.id}: locked", reason=reason)


@users_group.command("unlock")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def users_unlock(account, as_json) -> None:
    """Unlock an account that has a way to log in."""
    _act(operators.unlock, account, as_json, "account {result.id}: active")


@users_group.command("logout")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def users_logout(account, as_json) -> None:
    """End every live session of an account; its clients are told (back-channel logout)."""
    _act(operators.logout, account, as_json, "{account}: {result} session(s) ended")


@users_group.command("reset-password")
@click.argument("account")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of standard input.")
@click.option("--generate", is_flag=True, help="Generate a random password and print it (once).")
@json_option
@with_appcontext
@reports_errors
def users_reset_password(account, password_stdin, generate, as_json) -> None:
    """Set a new password: every session ends, every token is revoked, the person is told."""
    if password_stdin == generate:
        fail("give exactly one of --password-stdin and --generate")
    password = _stdin_line() if password_stdin else None
    result = operator_actions.reset_password(account, password, generate=generate)
    if as_json:
        echo_json({"account": operators.account_summary(result.account), "password": result.generated_password,
                   "sessions_ended": result.sessions_ended, "tokens_revoked": result.tokens_revoked,
                   "notified": result.notified, "not_notified": result.not_notified})
        return
    click.echo(f"account {result.account.id}: password reset, {result.sessions_ended} session(s) ended, "
               f"{result.tokens_revoked} token(s) revoked")
    if result.generated_password:
        click.echo(f"new password (shown once): {result.generated_password}")
    click.echo(f"person told by: {', '.join(result.notified) or 'nobody (no verified phone or email)'}")
    for failure in result.not_notified:
        click.echo(f"Warning: not told by {failure}", err=True)


def _stdin_line() -> str:
    """The first line of standard input, without its line break."""
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


@users_group.command("revoke")
@click.argument("account")
@click.option("--client", help="client_id: only this client (default: every client).")
@json_option
@with_appcontext
@reports_errors
def users_revoke(account, client, as_json) -> None:
    """Delete the account's consents and revoke its tokens (at every client, or one)."""
    result = operator_actions.revoke_access(account, client)
    if as_json:
        echo_json({"account": result.account.id, "client": result.client, "consents_removed": result.consents_removed,
                   "tokens_revoked": result.tokens_revoked})
        return
    click.echo(f"account {result.account.id}: {result.consents_removed} consent(s) removed, "
               f"{result.tokens_revoked} token(s) revoked" + (f" at {client}" if client else ""))


@users_group.command("close")
@click.argument("account")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@json_option
@with_appcontext
@reports_errors
def users_close(account, reason, as_json) -> None:
    """Close an account as its holder's own close does; its identities stay reserved for the cooling-off."""
    row = operators.resolve_account(account)
    result = operator_actions.close(row.id, reason)
    if as_json:
        echo_json({"account": operators.account_summary(row), "sessions_ended": result.sessions_ended,
                   "tokens_revoked": result.tokens_revoked, "consents_removed": result.consents_removed})
        return
    click.echo(f"account {row.id}: closed, {result.sessions_ended} session(s) ended, {result.tokens_revoked} "
               f"token(s) revoked, {result.consents_removed} consent(s) removed")


@users_group.command("export")
@click.argument("account")
@json_option
@with_appcontext
@reports_errors
def users_export(account, as_json) -> None:  # noqa: ARG001 (JSON either way; --json makes a refusal JSON too)
    """Everything the hub holds about a person, as JSON (read-only)."""
    echo_json(data_export.export_account(account))


@click.group("audit")
def audit_group() -> None:
    """The audit log."""


def _when(value: str | None, flag: str) -> datetime | None:
    """An ISO 8601 date or time; without a zone, UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag}: not an ISO 8601 date or time: {value!r}")
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


@audit_group.command("search")
@click.option("--account", help=ACCOUNT_HELP)
@click.option("--client", help="client_id.")
@click.option("--kind", help="e.g. login.failure, or a prefix ending in * (login.*).")
@click.option("--actor", help="e.g. operator:cli, self, system, or a prefix ending in *.")
@click.option("--since", help="ISO 8601, inclusive (UTC unless a zone is given).")
@click.option("--until", help="ISO 8601, exclusive.")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@with_appcontext
@reports_errors
def audit_search(account, client, kind, actor, since, until, limit, as_json) -> None:
    """Audit events, newest first."""
    account_id = operators.resolve_account(account).id if account else None
    rows = audit.events_to_dicts(audit.search_events(
        account_id=account_id, client_id=client, kind=kind, actor=actor, since=_when(since, "--since"),
        until=_when(until, "--until"), limit=limit))
    if as_json:
        echo_json_lines(rows)
        return
    for e in rows:
        click.echo(f"{e['id']:>8}  {e['at']:%Y-%m-%d %H:%M:%S}  {e['kind']:24} account {e['account_id'] or '-':<8} "
                   f"{e['actor'] or '-':16} {e['client'] or '-'}")
