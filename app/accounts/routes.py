"""Interaction pages: login and consent. The protocol code sends the browser here with an
interaction id and these pages send it back to ``/authorize/resume/<uid>`` when done."""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for

from app.accounts.forms import ConsentForm, ContinueForm, LoginForm, LogoutForm
from app.accounts.service import authenticate_password, get_active_account
from app.errors import AuthenticationFailed, InvalidInput
from app.extensions import limiter
from app.oidc import authorization, logout
from app.oidc.routes import render_logged_out
from app.oidc.sessions import current_session, set_session_cookie, start_session

bp = Blueprint("accounts", __name__)


def _login_rate_limit():
    return current_app.config["TESSERA_LOGIN_RATE_LIMIT"]


def _login_key():
    # Per client address and per typed identifier: slows both spraying and targeted guessing.
    return f"{request.remote_addr}|{(request.form.get('login') or '').strip().lower()}"


def _interaction_or_error(uid):
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return None, (render_template("errors/interaction_expired.html"), 400)
    return interaction, None


def _resume(interaction):
    return redirect(url_for("oidc.resume", uid=interaction.uid))


@bp.route("/interaction/<uid>/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, key_func=_login_key, methods=["POST"])
@limiter.limit(_login_rate_limit, methods=["POST"])
def login(uid: str):
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    client = interaction.client
    form = LoginForm()
    continue_form = ContinueForm(prefix="continue")
    session = current_session()
    current = get_active_account(session.account_id) if session else None
    error = None
    if request.method == "GET" and not form.login.data:
        form.login.data = interaction.params.get("login_hint") or ""
    if continue_form.submit.data and continue_form.validate_on_submit() and current is not None:
        # prompt=select_account: the user picked the account already logged in.
        authorization.complete_login(interaction, session)
        return _resume(interaction)
    if form.submit.data and form.validate_on_submit():
        try:
            account = authenticate_password(form.login.data, form.password.data, tenant_id=client.tenant_id,
                                           client_id=client.id)
        except AuthenticationFailed as exc:
            error = exc.detail
        else:
            new_session, cookie_value = start_session(account, amr=["pwd"])
            logout.replace_session(session, new_session)
            authorization.complete_login(interaction, new_session)
            response = make_response(_resume(interaction))
            set_session_cookie(response, cookie_value, new_session)
            return response
    status = 401 if error else 200
    return render_template(
        "accounts/login.html", form=form, continue_form=continue_form, client=client,
        tenant=client.tenant, current=current if interaction.params.get("prompt") == "select_account" else None,
        error=error,
    ), status


@bp.route("/interaction/<uid>/consent", methods=["GET", "POST"])
def consent(uid: str):
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    session = current_session()
    if session is None:
        return _resume(interaction)  # the session ended meanwhile: the request starts over with a login
    form = ConsentForm()
    if form.validate_on_submit():
        if form.approve.data:
            authorization.complete_consent(interaction, session.account_id)
            return _resume(interaction)
        return redirect(authorization.deny_interaction(interaction))
    client = interaction.client
    return render_template(
        "accounts/consent.html", form=form, client=client, tenant=client.tenant,
        scopes=authorization.requested_scopes(interaction),
    )


@bp.route("/logout/confirm", methods=["GET", "POST"])
def confirm_logout():
    """RP-Initiated Logout 1.0 section 2: the user confirms a logout request that could not be
    trusted (no valid id_token_hint of this session)."""
    try:
        end_request = logout.parse_end_session_request(request.args)
    except InvalidInput as exc:
        return render_template("errors/logout.html", detail=exc.detail), 400
    form = LogoutForm()
    if form.validate_on_submit():
        return render_logged_out(logout.end_session(current_session()), logout.after_logout_url(end_request))
    client = end_request.client
    return render_template("accounts/confirm_logout.html", form=form, client=client,
                           tenant=client.tenant if client else None)
