"""Protocol endpoints. Each route parses, calls a service, and answers in the spec's format."""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import Blueprint, current_app, jsonify, make_response, redirect, render_template, request, url_for

from app.budgets import BudgetSpent
from app.extensions import csrf, db, limiter
from app.errors import InvalidInput
from app.oidc import authorization, chain, logout
from app.oidc.clients import usable_client
from app.oidc.discovery import provider_metadata
from app.oidc.keys import public_jwks
from app.oidc.sessions import (
    clear_session_cookie, current_session, refresh_browser_state_cookie, remember_client, session_state,
)
from app.oidc.userinfo import BearerError, userinfo_for

bp = Blueprint("oidc", __name__)
csrf.exempt(bp)  # protocol endpoints: clients authenticate, there are no browser forms here
bp.after_app_request(refresh_browser_state_cookie)  # on every response of the hub that used the session


def _server():
    return current_app.extensions["tessera_authorization_server"]


def _with_issuer(response):
    """RFC 9207: every authorization response redirected to a client carries ``iss``."""
    if response.status_code in (302, 303) and response.location:
        response.location = add_params_to_uri(response.location, [("iss", current_app.config["TESSERA_ISSUER"])])
    return response


def _authorization_error(oauth_request, error: OAuth2Error, state: str | None):
    error.state = state
    if error.redirect_uri:
        return _with_issuer(_server().handle_error_response(oauth_request, error))
    # No verified redirect URI: never redirect (RFC 6749 4.1.2.1); tell the user instead.
    return render_template("errors/authorization.html", error=error), 400


def _authorize(oauth_request=None, interaction=None):
    server = _server()
    oauth_request = server.create_oauth2_request(oauth_request)
    state = oauth_request.payload.state
    try:
        authorization.check_syntax(oauth_request.payload.data)
        grant = server.get_consent_grant(request=oauth_request)
    except OAuth2Error as error:
        db.session.rollback()
        return _authorization_error(oauth_request, error, state)
    except ValueError as exc:
        # Authlib refused to build an error whose description would quote a character RFC 6749
        # forbids there: a malformed request, answered without redirecting (nothing was verified).
        current_app.logger.warning("malformed authorization request: %s", exc)
        db.session.rollback()
        return _authorization_error(oauth_request, InvalidRequestError("malformed authorization request"), state)
    try:
        decision = authorization.decide(grant, interaction)
    except OAuth2Error as error:
        error.redirect_uri = grant.redirect_uri
        return _authorization_error(oauth_request, error, state)

    if decision.outcome != "issue":
        if interaction is None:
            interaction = authorization.start_interaction(grant, decision.outcome)
        endpoint = "accounts.login" if decision.outcome == "login" else "accounts.consent"
        return redirect(url_for(endpoint, uid=interaction.uid))

    client = grant.request.client
    if interaction is not None and interaction.login_completed_at and not interaction.chain_done:
        partners = chain.chain_partners(client)
        if partners:
            login_chain = chain.start_chain(interaction, partners)
            return redirect(url_for("oidc.chain_step", uid=login_chain.uid))

    grant.request.tessera_auth = decision.auth
    response = server.create_authorization_response(request=grant.request, grant_user=decision.auth.account, grant=grant)
    session = current_session()
    remember_client(session, client)
    authorization.finish_interaction(interaction)
    db.session.commit()
    if response.status_code == 302 and "code=" in (response.location or ""):
        # Session Management 1.0 section 3: session_state in the authentication response.
        state = session_state(client.client_id, grant.redirect_uri, session)
        response.location = add_params_to_uri(response.location, [("session_state", state)])
    return _with_issuer(response)


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery():
    return jsonify(provider_metadata())


@bp.get("/jwks")
def jwks():
    response = jsonify(public_jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    return _authorize()


@bp.get("/authorize/resume/<uid>")
def resume(uid: str):
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return render_template("errors/interaction_expired.html"), 400
    return _authorize(authorization.resumed_request(interaction, request.headers), interaction)


def _token_rate_limit():
    """A flood ceiling per client address, far above a busy site's peak: successful traffic is
    not what is bounded here, failed client authentications are (``server.CLIENT_AUTHENTICATIONS``)."""
    return current_app.config["TESSERA_TOKEN_RATE_LIMIT"]


@bp.errorhandler(BudgetSpent)
def _budget_spent(error: BudgetSpent):
    # The same JSON as flask-limiter's 429 on these endpoints, with when to come back.
    response = jsonify(error="invalid_request", error_description=error.detail)
    response.status_code = 429
    response.headers["Retry-After"] = str(error.retry_after)
    return response


@bp.post("/token")
@limiter.limit(_token_rate_limit)
def token():
    response = _server().create_token_response()
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    access_token = None
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        access_token = auth[7:].strip()
    elif request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        access_token = request.form.get("access_token")  # RFC 6750 2.2
    try:
        claims = userinfo_for(access_token)
    except BearerError as error:
        response = jsonify(error=error.error, error_description=error.description)
        response.status_code = error.status
        response.headers["WWW-Authenticate"] = f'Bearer error="{error.error}", error_description="{error.description}"'
        return response
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/revoke")
@limiter.limit(_token_rate_limit)
def revoke():
    response = _server().create_endpoint_response("revocation")
    db.session.commit()
    return response


@bp.post("/introspect")
@limiter.limit(_token_rate_limit)
def introspect():
    response = _server().create_endpoint_response("introspection")
    db.session.commit()
    return response


# --- logout (RP-Initiated, Front-Channel, Back-Channel Logout 1.0) -----------------------------
def render_logged_out(frontchannel_urls: list[str], redirect_to: str | None):
    """The page after a logout: loads every front-channel logout URL in a hidden iframe, then
    continues to the post-logout redirect (or stays, saying the user is logged out)."""
    response = make_response(render_template("oidc/logged_out.html", frontchannel_urls=frontchannel_urls,
                                             redirect_to=redirect_to))
    response.headers["Cache-Control"] = "no-store"
    clear_session_cookie(response)
    return response


@bp.route("/logout", methods=["GET", "POST"])
def end_session():
    params = request.values
    try:
        end_request = logout.parse_end_session_request(params)
    except InvalidInput as exc:
        return render_template("errors/logout.html", detail=exc.detail), 400
    session = current_session()
    if session is None:
        return render_logged_out([], logout.after_logout_url(end_request))
    if not end_request.trusted:
        # RP-Initiated Logout 1.0 section 2: ask the user when the request cannot be trusted.
        return redirect(url_for("accounts.confirm_logout", **logout.confirmation_params(end_request)))
    return render_logged_out(logout.end_session(session), logout.after_logout_url(end_request))


@bp.get("/session/check")
def check_session_iframe():
    """Session Management 1.0 section 3.3: the OP iframe. It reads the browser-state cookie and
    answers the RP iframe's postMessage with changed / unchanged / error. Every RP frames it:
    the one page the hub lets any site frame (no X-Frame-Options)."""
    response = make_response(render_template("oidc/check_session.html"))
    response.headers["Content-Security-Policy"] = "default-src 'none'; script-src 'unsafe-inline'; frame-ancestors *"
    return response


# --- auto-login across partner sites ----------------------------------------------------------
@bp.get("/initiate")
def initiate_login():
    """Send the browser to a client's initiate_login_uri (OIDC Core 4, third-party-initiated login)."""
    client = usable_client(request.args.get("client_id", ""))
    if client is None or not client.initiate_login_uri:
        return render_template("errors/bad_request.html", detail="unknown client, or it registered no initiate_login_uri"), 400
    return redirect(chain.initiate_login_url(client, request.args.get("target_link_uri"), request.args.get("login_hint")))


@bp.get("/chain/<uid>")
def chain_step(uid: str):
    login_chain = chain.load_chain(uid, authorization.browser_hash())
    if login_chain is None:
        return render_template("errors/interaction_expired.html"), 400
    next_url = chain.next_step(login_chain, current_app.config["TESSERA_ISSUER"] + url_for("oidc.chain_step", uid=uid))
    if next_url is None:
        return redirect(url_for("oidc.resume", uid=login_chain.interaction_uid))
    return redirect(next_url)
