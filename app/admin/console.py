"""The admin console (/admin): operators' pages over the admin services, logged in through the
hub's own authorization code flow with PKCE.

Rules (docs/flows/admin-console.md):

- The console is a public, trusted client (``TESSERA_ADMIN_CONSOLE_CLIENT``, scope ``openid
  admin``, redirect URI ``TESSERA_ISSUER/admin/callback``) registered by ``ensure_console_client``.
- /admin/login sends the browser to /authorize with state, nonce and an S256 code challenge; the
  verifier stays in the Flask session (a signed, HttpOnly cookie). /admin/callback checks the state
  and redeems the code in-process through the token endpoint's own logic (the Authlib server), not
  over HTTP; the access token is kept in the Flask session.
- Every console request turns the token into a ``Principal`` (``principal_from_token``), the
  admin API's: a dead token sends the browser back to /admin/login; a person without an admin
  role sees a 403 page. Refusals of the role (403) and of reach (404) are the API's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from functools import wraps
from urllib.parse import urlencode

from flask import (
    Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for,
)
from werkzeug.test import EnvironBuilder

from app.admin.principals import AdminRefusal, Principal, principal_from_token
from app.admin.reach import MAX_ID
from app.errors import TesseraError
from app.extensions import db
from app.oidc.bearer import find_access_token
from app.oidc.client_admin import update_client
from app.oidc.clients import create_client, get_client
from app.oidc.server import revoke_family

bp = Blueprint("admin_console", __name__, url_prefix="/admin")

#: The Flask session's keys: the login under way (state, nonce, verifier) and the access token.
PENDING, TOKEN = "admin_console_login", "admin_console_token"
SCOPE = "openid admin"


def console_client_id() -> str:
    return current_app.config["TESSERA_ADMIN_CONSOLE_CLIENT"]


def console_redirect_uri() -> str:
    return current_app.config["TESSERA_ISSUER"] + "/admin/callback"


def ensure_console_client(tenant: str, *, actor: str) -> tuple[str, bool]:
    """Register the console's client at ``tenant`` if it is missing (or give it the redirect URI
    of this issuer). Returns its client_id and whether anything changed."""
    client_id, redirect_uri = console_client_id(), console_redirect_uri()
    existing = get_client(client_id)
    if existing is None:
        create_client(tenant=tenant, name="Tessera admin console", redirect_uris=[redirect_uri], public=True,
                      trusted=True, grant_types=["authorization_code"], scope=SCOPE, client_id=client_id)
        return client_id, True
    if redirect_uri not in existing.redirect_uris:
        update_client(client_id, actor=actor, redirect_uris=[*existing.redirect_uris, redirect_uri])
        return client_id, True
    return client_id, False


# --- who is asking -------------------------------------------------------------------------------

def principal() -> Principal:
    return g.principal


def console_login_required(view):
    """The console's session holds a live admin token: ``g.principal`` is set. Without one (or
    with a dead one), the browser goes to /admin/login."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        token = session.get(TOKEN)
        if not token:
            return redirect(url_for("admin_console.login"))
        try:
            g.principal = principal_from_token(token)
        except AdminRefusal as refusal:
            if refusal.status == 401:
                session.pop(TOKEN, None)
                return redirect(url_for("admin_console.login"))
            raise
        return view(*args, **kwargs)
    return wrapper


@bp.errorhandler(AdminRefusal)
def _refused(refusal: AdminRefusal):
    return render_template("admin/refused.html", refusal=refusal), refusal.status


# --- what every page shares ----------------------------------------------------------------------

#: Rows on one page of a list.
PAGE_SIZE = 50


def done_or_refused(action, message: str) -> None:
    """Run a service call; flash ``message``, or the service's refusal (a role or reach refusal
    is the error page's)."""
    try:
        action()
    except AdminRefusal:
        raise
    except TesseraError as error:
        db.session.rollback()
        flash(error.detail, "error")
    else:
        flash(message, "info")


def text_arg(name: str) -> str | None:
    """A query argument of at most 200 characters (400 otherwise), None when empty."""
    value = (request.args.get(name) or "").strip()
    if len(value) > 200 or "\x00" in value:
        raise AdminRefusal(400, "invalid_request", "Invalid request", f"{name} must be at most 200 characters")
    return value or None


def choice_arg(name: str, choices) -> str | None:
    """A query argument that is one of ``choices`` (400 otherwise), None when empty."""
    value = text_arg(name)
    if value is not None and value not in choices:
        raise AdminRefusal(400, "invalid_request", "Invalid request", f"{name} must be one of {', '.join(choices)}")
    return value


def id_arg(name: str) -> int | None:
    """A query argument that is a row id (400 otherwise), None when empty."""
    value = text_arg(name)
    if value is not None and (not value.isdigit() or not 0 < int(value) <= MAX_ID):
        raise AdminRefusal(400, "invalid_request", "Invalid request", f"{name} must be an id")
    return int(value) if value is not None else None


# --- logging in ----------------------------------------------------------------------------------

def _s256(verifier: str) -> str:
    # RFC 7636 4.2: BASE64URL(SHA256(ASCII(code_verifier)))
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


@bp.get("/login")
def login():
    """Start the hub's code flow with PKCE for the console's client."""
    pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
               "verifier": secrets.token_urlsafe(48)}
    session[PENDING] = pending
    query = urlencode({"response_type": "code", "client_id": console_client_id(),
                       "redirect_uri": console_redirect_uri(), "scope": SCOPE, "state": pending["state"],
                       "nonce": pending["nonce"], "code_challenge": _s256(pending["verifier"]),
                       "code_challenge_method": "S256"})
    return redirect(url_for("oidc.authorize") + "?" + query)


@bp.get("/callback")
def callback():
    """The hub's answer to /admin/login: check the state, redeem the code in-process."""
    pending = session.pop(PENDING, None)
    state = request.args.get("state", "")
    if not pending or not hmac.compare_digest(state.encode(), pending["state"].encode()):
        return render_template("admin/login_failed.html", detail="This login is not the one this browser started."), 400
    if request.args.get("error") or not request.args.get("code"):
        detail = request.args.get("error_description") or request.args.get("error") or "no code came back"
        return render_template("admin/login_failed.html", detail=detail[:200]), 400
    tokens = _redeem(request.args["code"], pending["verifier"])
    if tokens is None or not _nonce_matches(tokens.get("id_token", ""), pending["nonce"]):
        return render_template("admin/login_failed.html", detail="The hub did not accept the login."), 400
    session[TOKEN] = tokens["access_token"]
    return redirect(url_for("admin_console.home"))


def _redeem(code: str, verifier: str) -> dict | None:
    """POST /token as the console, in-process: the token endpoint's own logic (Authlib's server
    reads ``flask.request``, so the request is pushed as a request context of its own)."""
    environ = EnvironBuilder(path="/token", method="POST", base_url=current_app.config["TESSERA_ISSUER"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": console_redirect_uri(),
        "client_id": console_client_id(), "code_verifier": verifier}).get_environ()
    server = current_app.extensions["tessera_authorization_server"]
    with current_app.request_context(environ):
        response = server.create_token_response()
    if response.status_code != 200:
        db.session.rollback()
        return None
    db.session.commit()
    return json.loads(response.get_data(as_text=True))


def _nonce_matches(id_token: str, nonce: str) -> bool:
    """The ID token's nonce is the one this login sent (OIDC Core 3.1.3.7 step 11). The token came
    from the hub's own token endpoint in this process: its signature needs no check here."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return False
    return isinstance(claims, dict) and hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode())


@bp.post("/logout")
def logout():
    """Revoke the console's token and forget it (the hub's own session is the person's to end)."""
    token = session.pop(TOKEN, None)
    record = find_access_token(token) if isinstance(token, str) else None
    if record is not None:
        revoke_family(record.family_id)
        db.session.commit()
    return render_template("admin/logged_out.html")
