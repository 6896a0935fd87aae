"""Forgot password pages (app.accounts.recovery): the phone or email, the code sent to the phone,
the new password. Linked from both login pages; started from an authorization request's login
(``?interaction=<uid>``), the pages wear its site's branding and send the person back to that
login afterwards. A spent budget is the 429 page (``app.error_pages``) with Retry-After."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask import session as browser_session

from app.accounts import recovery
from app.accounts.forms import CodeForm, ForgotPasswordForm, NewPasswordForm
from app.errors import AuthenticationFailed, InvalidInput
from app.oidc import authorization

bp = Blueprint("recovery", __name__, url_prefix="/password")

#: Flask-session key of a reset by phone: {"challenge": uid, "interaction": uid or None}. A decoy
#: challenge's uid looks the same: the cookie, readable by its holder, tells nothing.
STATE_KEY = "recovery"


def _interaction(uid: str | None):
    """The authorization request the person came from, if it is still this browser's."""
    return authorization.load_interaction(uid) if uid else None


def _render(template: str, interaction, status: int = 200, **context):
    client = interaction.client if interaction is not None else None
    return render_template(template, client=client, tenant=client.tenant if client else None,
                           interaction=interaction.uid if interaction is not None else None, **context), status


def _form_error(form) -> str | None:
    """The first refusal of a submitted form (the two passwords differ, a missing CSRF token…)."""
    return next((errors[0] for errors in form.errors.values() if errors), None) if form.is_submitted() else None


@bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """Step 1: the phone or email. The same answer whether it names an account or not."""
    interaction = _interaction(request.args.get("interaction"))
    uid = interaction.uid if interaction is not None else None
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        try:
            asked = recovery.request_reset(form.login.data, uid)
        except InvalidInput as exc:  # not a phone number or an email address at all
            return _render("accounts/password_forgot.html", interaction, 400, form=form, error=exc.detail)
        if asked.channel == "sms":
            browser_session[STATE_KEY] = {"challenge": asked.challenge_uid, "interaction": uid}
            return redirect(url_for("recovery.code"), 303)
        return _render("accounts/password_sent.html", interaction,
                       minutes=max(1, current_app.config["TESSERA_PASSWORD_RESET_TTL"] // 60))
    return _render("accounts/password_forgot.html", interaction, 400 if form.is_submitted() else 200,
                   form=form, error=_form_error(form))


@bp.route("/forgot/code", methods=["GET", "POST"])
def code():
    """Step 2 by phone: the code. Wrong codes count against the challenge, which locks."""
    state = browser_session.get(STATE_KEY) or {}
    if not state.get("challenge"):
        return redirect(url_for("recovery.forgot"))
    interaction = _interaction(state.get("interaction"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            token = recovery.verify_reset_code(state["challenge"], form.code.data, state.get("interaction"))
        except AuthenticationFailed as exc:
            return _render("accounts/password_code.html", interaction, 401, form=form, error=exc.detail)
        browser_session.pop(STATE_KEY, None)
        return redirect(url_for("recovery.reset", token=token), 303)
    return _render("accounts/password_code.html", interaction, form=form, error=None)


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    """Step 3: the new password, with the link from the email or from the code."""
    try:
        link = recovery.read_reset_link(token)
    except recovery.ResetLinkInvalid as exc:
        return _render("accounts/password_link.html", None, 400, error=exc.detail)
    interaction = _interaction(link.interaction)
    form = NewPasswordForm()
    if not form.validate_on_submit():
        error = _form_error(form)
    else:
        try:
            recovery.complete_reset(token, form.password.data)
        except recovery.ResetLinkInvalid as exc:
            return _render("accounts/password_link.html", None, 400, error=exc.detail)
        except InvalidInput as exc:
            error = exc.detail
        else:
            if interaction is not None:
                flash("Your password was changed. Log in with your new password.", "info")
                return redirect(url_for("accounts.login", uid=interaction.uid), 303)
            return _render("accounts/password_done.html", None)
    return _render("accounts/password_new.html", interaction, 400 if error else 200, form=form, error=error)
