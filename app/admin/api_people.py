"""Admin API: people, their sessions, and the audit log (``/me``, ``/users``, ``/sessions``,
``/audit``), over ``app.accounts.operators`` and ``app.audit``.

A tenant admin reaches the people related to its tenant (``tenant_related_clause``) and the audit
events of its clients and of those people; support finds people, locks and unlocks them and ends
their sessions; an auditor reads.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import Response, request, stream_with_context

from app import audit
from app.accounts import operator_actions, operators
from app.accounts.data_export import export_account
from app.accounts.models import Account, AuditEvent
from app.admin.blueprint import (
    MAX_ID, answer, arg_int, body, bp, field, only_fields, page, path_id, principal, refuse, unknown,
)
from app.admin.principals import admin_required
from app.mfa.operators import reset_second_factors
from app.admin.reach import account_in_reach, client_in_reach, audit_in_reach, reachable_accounts, search_people
from app.extensions import db
from app.oidc.logout import end_session
from app.oidc.models import SSOSession

_SEARCH_ARGS = ("phone", "email", "username", "tenant", "name", "sub", "client", "legacy_id")


@bp.get("/me")
@admin_required
def me():
    return answer(principal().to_dict())


def _account(account_id: str) -> Account:
    return account_in_reach(principal(), path_id(account_id, "user"))


@bp.get("/users")
@admin_required
def users_search():
    principal().require("users", "read")
    criteria = {}
    for name in _SEARCH_ARGS:
        value = request.args.get(name)
        if value is not None:
            if not value.strip() or len(value) > 200 or "\x00" in value:
                raise refuse(400, "invalid_request", f"{name} must be 1 to 200 characters")
            criteria[name] = value
    if not criteria:
        query = reachable_accounts(principal(), db.select(Account), Account.id)
        return page(query, Account.id, operators.account_summary)
    accounts = search_people(principal(), **criteria)
    return answer({"items": [operators.account_summary(a) for a in accounts], "next_cursor": None})


@bp.get("/users/<account_id>")
@admin_required
def users_show(account_id: str):
    principal().require("users", "read")
    return answer(operators.account_overview(_account(account_id)))


@bp.post("/users/<account_id>/lock")
@admin_required
def users_lock(account_id: str):
    principal().require("users", "support")
    data = body()
    only_fields(data, ("reason",))
    reason = field(data, "reason", str, required=True)
    account = operators.lock(_account(account_id).id, reason, actor=principal().actor)
    return answer(operators.account_summary(account))


@bp.post("/users/<account_id>/unlock")
@admin_required
def users_unlock(account_id: str):
    principal().require("users", "support")
    account = operators.unlock(_account(account_id).id, actor=principal().actor)
    return answer(operators.account_summary(account))


@bp.post("/users/<account_id>/reset-password")
@admin_required
def users_reset_password(account_id: str):
    """Set a new password (``password``) or generate one (``generate``: in the answer, once); every
    session and token of the person ends and they are told by SMS and email."""
    principal().require("users", "manage")
    data = body()
    only_fields(data, ("password", "generate"))
    password, generate = field(data, "password", str), bool(field(data, "generate", bool))
    result = operator_actions.reset_password(_account(account_id).id, password, generate=generate,
                                             actor=principal().actor)
    return answer({"user": operators.account_summary(result.account), "password": result.generated_password,
                   "sessions_ended": result.sessions_ended, "tokens_revoked": result.tokens_revoked,
                   "notified": result.notified, "not_notified": result.not_notified})


@bp.post("/users/<account_id>/reset-mfa")
@admin_required
def users_reset_mfa(account_id: str):
    """Remove every second factor of the person (a lost phone, checked at the help desk)."""
    principal().require("users", "manage")
    removed = reset_second_factors(_account(account_id).id, actor=principal().actor)
    return answer({"removed": removed})


@bp.post("/users/<account_id>/revoke")
@admin_required
def users_revoke(account_id: str):
    """Delete the person's consents and revoke their tokens, at every client in reach or at ``client``."""
    principal().require("users", "revoke")
    data = body() if request.get_data(cache=True) else {}
    only_fields(data, ("client",))
    client = field(data, "client", str)
    account = _account(account_id)
    if client is None and principal().tenant_id is not None:
        raise refuse(400, "invalid_request", "a tenant admin revokes at one of its clients: give client")
    if client is not None:
        client_in_reach(principal(), client)
    result = operator_actions.revoke_access(account.id, client, actor=principal().actor)
    return answer({"user": operators.account_summary(result.account), "client": result.client,
                   "consents_removed": result.consents_removed, "tokens_revoked": result.tokens_revoked})


@bp.post("/users/<account_id>/close")
@admin_required
def users_close(account_id: str):
    """Close the account as the person's own close does (identities kept for the cooling-off)."""
    principal().require("users", "manage")
    data = body()
    only_fields(data, ("reason",))
    account = _account(account_id)
    closure = operator_actions.close(account.id, field(data, "reason", str, required=True), actor=principal().actor)
    return answer({"user": operators.account_summary(db.session.get(Account, account.id)),
                   "sessions_ended": closure.sessions_ended, "tokens_revoked": closure.tokens_revoked,
                   "consents_removed": closure.consents_removed})


@bp.get("/users/<account_id>/export")
@admin_required
def users_export(account_id: str):
    """The person's data (no secrets), as a download; audited."""
    principal().require("users", "manage")
    account = _account(account_id)
    data = export_account(account.id)
    audit.record("account.exported", account_id=account.id, actor=principal().actor)
    db.session.commit()
    return answer(data, headers={"Content-Disposition": f'attachment; filename="account-{account.id}.json"'})


# --- sessions ------------------------------------------------------------------------------------

def _session_to_dict(session: SSOSession) -> dict:
    return {"sid": session.sid, "account_id": session.account_id, "created_at": session.created_at,
            "last_seen_at": session.last_seen_at, "expires_at": session.expires_at,
            "ip_address": session.ip_address, "user_agent": session.user_agent, "amr": session.amr}


@bp.get("/users/<account_id>/sessions")
@admin_required
def users_sessions(account_id: str):
    principal().require("sessions", "read")
    account = _account(account_id)
    query = db.select(SSOSession).filter_by(account_id=account.id, ended_at=None)
    return page(query, SSOSession.id, _session_to_dict)


@bp.get("/sessions")
@admin_required
def sessions_list():
    """Live hub sessions of the people in reach, newest first (``user``: one person's)."""
    principal().require("sessions", "read")
    query = reachable_accounts(principal(), db.select(SSOSession).filter_by(ended_at=None), SSOSession.account_id)
    user = arg_int("user", None, low=1)
    if user is not None:
        query = query.where(SSOSession.account_id == user)
    return page(query, SSOSession.id, _session_to_dict, newest_first=True)


@bp.delete("/users/<account_id>/sessions")
@admin_required
def users_end_sessions(account_id: str):
    """End every live session of the person (their sites are told by back-channel logout)."""
    principal().require("sessions", "end")
    ended = operators.logout(_account(account_id).id, actor=principal().actor)
    return answer({"sessions_ended": ended})


@bp.delete("/sessions/<sid>")
@admin_required
def sessions_end(sid: str):
    """End one hub session (its sites are told as for a logout)."""
    principal().require("sessions", "end")
    session = db.session.scalar(db.select(SSOSession).filter_by(sid=sid[:128], ended_at=None))
    if session is None:
        raise unknown("live session")
    _account(str(session.account_id))
    audit.record("account.session_ended", account_id=session.account_id, actor=principal().actor, sid=session.sid)
    end_session(session)  # commits
    return answer({"sessions_ended": 1})


# --- audit ---------------------------------------------------------------------------------------

def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise refuse(400, "invalid_request", f"{name} must be an ISO 8601 time") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _audit_query():
    principal().require("audit", "read")
    for name in ("kind", "actor", "client"):
        value = request.args.get(name)
        if value is not None and (not value or len(value) > 200 or "\x00" in value):
            raise refuse(400, "invalid_request", f"{name} must be 1 to 200 characters")
    account_id = arg_int("user", None, low=1, high=MAX_ID)
    query = audit.events_query(account_id=account_id, client_id=request.args.get("client"),
                               kind=request.args.get("kind"), actor=request.args.get("actor"),
                               since=_time_arg("since"), until=_time_arg("until"))
    return audit_in_reach(principal(), query)


@bp.get("/audit")
@admin_required
def audit_search():
    return page(_audit_query(), AuditEvent.id, audit.event_to_dict, newest_first=True)


@bp.get("/audit/export")
@admin_required
def audit_export():
    """Every matching event, oldest first, as JSON Lines (streamed in batches)."""
    query = _audit_query()

    def lines():
        after = 0
        while True:
            rows = list(db.session.scalars(query.where(AuditEvent.id > after).order_by(AuditEvent.id).limit(500)))
            for row in rows:
                yield _json_line(audit.event_to_dict(row))
            if len(rows) < 500:
                return
            after = rows[-1].id

    return Response(stream_with_context(lines()), mimetype="application/jsonl",
                    headers={"Cache-Control": "no-store", "Content-Disposition": 'attachment; filename="audit.jsonl"'})


def _json_line(data: dict) -> str:
    return json.dumps(data, default=lambda v: v.isoformat() + "Z" if isinstance(v, datetime) else str(v),
                      ensure_ascii=False, sort_keys=True) + "\n"
