"""The admin console's pages (/admin/…): dashboard, people, clients, tenants, deliveries, keys and
the audit log. Each page asks ``Principal.require`` and ``app.admin.reach`` exactly as the admin
API does, and each write calls the same service with ``actor = principal.actor`` (``admin:<id>``),
so it is audited like the API's — on the person's account when it concerns a person.

Forms are POSTs with Flask-WTF's CSRF token; a button shows only when the role may use it, and
the route checks again. A service's refusal (a locked account that has no way in, …) comes back
as a message on the page it was asked from.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from app import audit
from app.accounts import operators
from app.accounts.models import Account, AuditEvent
from app.admin.api_clients import contract_to_dict, tenant_to_dict
from app.admin.api_ops import key_to_dict
from app.admin.charts import dashboard_charts
from app.admin.console import (
    PAGE_SIZE, bp, console_login_required, done_or_refused, id_arg, principal, text_arg,
)
from app.admin.principals import AdminRefusal
from app.admin.reach import (
    MAX_ID, account_in_reach, audit_in_reach, client_in_reach, clients_query, deliveries_query,
    delivery_in_reach, page_of, search_people, tenants_query,
)
from app.errors import TesseraError
from app.events.models import OutboxEvent
from app.extensions import db
from app.oidc import deliveries
from app.oidc.client_admin import client_details, rotate_client_secret
from app.oidc.clients import set_client_disabled
from app.oidc.keys import ensure_keys, rotate_keys
from app.oidc.models import Client, SigningKey
from app.tenants.models import Tenant

#: How a person is looked up: the search form's choices (``operators.search_accounts`` criteria).
SEARCH_BY = {"phone": "Phone number", "email": "Email address", "name": "Name"}


# --- home ----------------------------------------------------------------------------------------

@bp.get("/")
@console_login_required
def home():
    return render_template("admin/home.html", charts=dashboard_charts(principal()))


# --- people --------------------------------------------------------------------------------------

@bp.get("/people")
@console_login_required
def people():
    principal().require("users", "read")
    by = request.args.get("by", "phone")
    if by not in SEARCH_BY:
        by = "phone"
    query, found, error = text_arg("q"), None, None
    if query:
        try:
            found = [operators.account_summary(a) for a in search_people(principal(), **{by: query})]
        except AdminRefusal:
            raise
        except TesseraError as refusal:
            error = refusal.detail
    return render_template("admin/people.html", search_by=SEARCH_BY, by=by, query=query or "", found=found,
                           error=error)


@bp.get("/people/<int:account_id>")
@console_login_required
def person(account_id: int):
    principal().require("users", "read")
    account = account_in_reach(principal(), account_id)
    return render_template("admin/person.html", person=operators.account_overview(account))


def _person_action(account_id: int, permission: tuple[str, str]) -> Account:
    principal().require(*permission)
    return account_in_reach(principal(), account_id)


@bp.post("/people/<int:account_id>/lock")
@console_login_required
def person_lock(account_id: int):
    account = _person_action(account_id, ("users", "support"))
    reason = (request.form.get("reason") or "").strip()[:500]
    done_or_refused(lambda: operators.lock(account.id, reason, actor=principal().actor), "Account locked.")
    return redirect(url_for(".person", account_id=account_id), 303)


@bp.post("/people/<int:account_id>/unlock")
@console_login_required
def person_unlock(account_id: int):
    account = _person_action(account_id, ("users", "support"))
    done_or_refused(lambda: operators.unlock(account.id, actor=principal().actor), "Account unlocked.")
    return redirect(url_for(".person", account_id=account_id), 303)


@bp.post("/people/<int:account_id>/logout")
@console_login_required
def person_logout(account_id: int):
    account = _person_action(account_id, ("sessions", "end"))
    done_or_refused(lambda: operators.logout(account.id, actor=principal().actor), "Sessions ended.")
    return redirect(url_for(".person", account_id=account_id), 303)


# --- tenants and clients -------------------------------------------------------------------------

@bp.get("/tenants")
@console_login_required
def tenants():
    principal().require("tenants", "read")
    result = page_of(tenants_query(principal()), Tenant.id, limit=PAGE_SIZE, cursor=text_arg("cursor"))
    return render_template("admin/tenants.html", tenants=[tenant_to_dict(t) for t in result.rows],
                           next_cursor=result.next_cursor)


@bp.get("/clients")
@console_login_required
def clients():
    principal().require("clients", "read")
    result = page_of(clients_query(principal()), Client.id, limit=PAGE_SIZE, cursor=text_arg("cursor"))
    return render_template("admin/clients.html", clients=[client_details(c) for c in result.rows],
                           next_cursor=result.next_cursor)


@bp.get("/clients/<client_id>")
@console_login_required
def client(client_id: str):
    principal().require("clients", "read")
    row = client_in_reach(principal(), client_id)
    return render_template("admin/client.html", client=client_details(row), contract=contract_to_dict(row))


def _set_disabled(client_id: str, disabled: bool):
    principal().require("clients", "update")
    client_in_reach(principal(), client_id)
    done_or_refused(lambda: set_client_disabled(client_id, disabled, actor=principal().actor),
                     "Client disabled." if disabled else "Client enabled.")
    return redirect(url_for(".client", client_id=client_id), 303)


@bp.post("/clients/<client_id>/disable")
@console_login_required
def client_disable(client_id: str):
    return _set_disabled(client_id, True)


@bp.post("/clients/<client_id>/enable")
@console_login_required
def client_enable(client_id: str):
    return _set_disabled(client_id, False)


@bp.post("/clients/<client_id>/rotate-secret")
@console_login_required
def client_rotate_secret(client_id: str):
    """A new secret, shown on this answer only (never stored in the clear, never shown again)."""
    principal().require("clients", "secret")
    client_in_reach(principal(), client_id)
    try:
        rotated = rotate_client_secret(client_id, actor=principal().actor)
    except AdminRefusal:
        raise
    except TesseraError as error:
        db.session.rollback()
        flash(error.detail, "error")
        return redirect(url_for(".client", client_id=client_id), 303)
    response = render_template("admin/secret.html", client_id=client_id, secret=rotated.client_secret,
                               previous_valid_until=rotated.previous_valid_until)
    return response, 200, {"Cache-Control": "no-store"}


# --- deliveries and keys -------------------------------------------------------------------------

@bp.get("/deliveries")
@console_login_required
def deliveries_list():
    """Failing deliveries first (pending after a failed attempt), then the newest."""
    principal().require("deliveries", "read")
    failing = db.and_(OutboxEvent.status == "pending", OutboxEvent.attempts > 0)
    query = deliveries_query(principal()).order_by(db.case((failing, 0), else_=1), OutboxEvent.id.desc())
    rows = [deliveries.delivery_to_dict(e) for e in db.session.scalars(query.limit(PAGE_SIZE * 2))]
    return render_template("admin/deliveries.html", deliveries=rows)


@bp.post("/deliveries/<int:event_id>/retry")
@console_login_required
def delivery_retry(event_id: int):
    principal().require("deliveries", "retry")
    if event_id > MAX_ID:
        raise AdminRefusal(404, "not_found", "Not found", f"no delivery {event_id}")
    delivery_in_reach(principal(), event_id)
    done_or_refused(lambda: deliveries.retry(event_id=event_id, actor=principal().actor),
                     f"Delivery {event_id} is due now.")
    return redirect(url_for(".deliveries_list"), 303)


@bp.get("/keys")
@console_login_required
def keys():
    principal().require("keys", "read")
    ensure_keys()
    rows = db.session.scalars(db.select(SigningKey).order_by(SigningKey.id.desc()))
    return render_template("admin/keys.html", keys=[key_to_dict(k) for k in rows])


@bp.post("/keys/rotate")
@console_login_required
def keys_rotate():
    principal().require("keys", "manage")
    rotate_keys(actor=principal().actor)
    flash("Signing keys rotated.", "info")
    return redirect(url_for(".keys"), 303)


# --- audit log -----------------------------------------------------------------------------------

@bp.get("/audit")
@console_login_required
def audit_log():
    """The audit events the principal reaches, newest first, filtered by kind (``login.*``),
    actor, person (account id) and client, paged by the API's cursors."""
    principal().require("audit", "read")
    filters = {name: text_arg(name) for name in ("kind", "actor", "person", "client")}
    query = audit_in_reach(principal(), audit.events_query(
        account_id=id_arg("person"), client_id=filters["client"], kind=filters["kind"],
        actor=filters["actor"]))
    result = page_of(query, AuditEvent.id, limit=PAGE_SIZE, cursor=text_arg("cursor"), newest_first=True)
    next_url = url_for(".audit_log", cursor=result.next_cursor, **{k: v for k, v in filters.items() if v}) \
        if result.next_cursor else None
    return render_template("admin/audit.html", events=[audit.event_to_dict(e) for e in result.rows],
                           filters=filters, next_url=next_url)
