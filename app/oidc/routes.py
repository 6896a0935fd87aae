"""Protocol endpoints. Each route parses, calls a service, and answers in the spec's format."""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for

from app.extensions import csrf, db, limiter
from app.oidc import authorization
from app.oidc.discovery import provider_metadata
from app.oidc.keys import public_jwks
from app.oidc.sessions import current_session, remember_client
from app.oidc.userinfo import BearerError, userinfo_for

bp = Blueprint("oidc", __name__)
csrf.exempt(bp)  # protocol endpoints: clients authenticate, there are no browser forms here


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
        grant = server.get_consent_grant(request=oauth_request)
    except OAuth2Error as error:
        db.session.rollback()
        return _authorization_error(oauth_request, error, state)
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

    grant.request.tessera_auth = decision.auth
    response = server.create_authorization_response(
        request=grant.request, grant_user=decision.auth.account, grant=grant
    )
    remember_client(current_session(), grant.request.client)
    authorization.finish_interaction(interaction)
    db.session.commit()
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
    return current_app.config["TESSERA_TOKEN_RATE_LIMIT"]


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
