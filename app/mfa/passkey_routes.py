"""Passkey pages and the options of their ceremonies (``app.mfa.passkeys`` holds the rules).

- ``/account/security/passkeys…``: adding (after a recent login), renaming and removing the
  person's passkeys and security keys.
- ``/interaction/<uid>/passkey``: a passwordless login at a site's login page — a discoverable
  credential, the person verified: the login is done, phishing-resistant (no second step).
- ``/account/login/passkey``: the same for the account center's own login.
- ``…/mfa/passkey/options``: a passkey as the second step of a login or a step-up; its answer is
  posted to the second-factor page itself (``app.mfa.routes``).

Each ceremony starts with a POST of its options endpoint (JSON, the page's CSRF token in the
``X-CSRFToken`` header), which hands this browser a single-use challenge; the browser's answer is
then posted as a form field (``credential``, JSON) with the CSRF token, so that the page that
verifies it can answer with a redirect or a page, like any login form. The script is
``app/static/passkeys.js``; the pages show the passkey buttons only where the browser has WebAuthn.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask import session as browser_session
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import Length, Optional

from app.accounts.guards import account_required
from app.accounts.models import Account
from app.accounts.routes import finish_login
from app.accounts.self_service import ACCOUNT_LOGIN_KEY, enter_account_center, recent_login_or_confirm
from app.budgets import BudgetSpent
from app.errors import TesseraError
from app.extensions import db
from app.mfa import notify, passkeys, recovery
from app.mfa.routes import (
    CREDENTIAL_MAX, account_label, challenged_account, discard_recovery_codes_if_unprotected, passkey_rules,
    security_page,
)
from app.oidc import authorization
from app.problems import problem
from app.registries import registries

bp = Blueprint("passkeys", __name__)


class PasskeyForm(FlaskForm):
    """A browser's answer to a ceremony (JSON), and the name of a new passkey."""

    name = StringField("Name", validators=[Optional(), Length(max=passkeys.NAME_MAX)])
    credential = StringField(validators=[Optional(), Length(max=CREDENTIAL_MAX)])
    submit = SubmitField("Save")


@bp.app_context_processor
def _passkey_login():
    def passkey_login(interaction_uid: str | None = None) -> dict:
        """The two addresses of the login page's "Sign in with a passkey" (templates/mfa/_passkey_login.html)."""
        if interaction_uid:
            return {"options": url_for("passkeys.login_options", uid=interaction_uid),
                    "action": url_for("passkeys.login", uid=interaction_uid)}
        return {"options": url_for("passkeys.account_login_options"), "action": url_for("passkeys.account_login")}

    return {"passkey_login": passkey_login}


def _options(call, *args, **kwargs):
    """The JSON options of a ceremony, or an RFC 9457 problem."""
    try:
        return jsonify(call(*args, **kwargs))
    except TesseraError as exc:
        return problem(exc.status, exc.title, exc.detail, reason="passkey_unavailable")


def _nobody():
    return problem(400, "No login waiting", "this login is not waiting for a passkey: start again",
                   reason="no_pending_login")


# --- the person's passkeys (/account/security) ---------------------------------------------------

@bp.post("/account/security/passkeys/options")
@account_required
def register_options():
    if stale := recent_login_or_confirm():
        return problem(401, "Confirm it's you", "confirm it is you first (your login is not recent)",
                       reason="login_not_recent", confirm=stale.location)
    return _options(passkeys.registration_options, g.account, account_label(g.account))


@bp.route("/account/security/passkeys/new", methods=["GET", "POST"])
@account_required
def register():
    """Add a passkey or security key (after a recent login): name it, then the browser creates it."""
    if stale := recent_login_or_confirm():
        return stale
    account, form, error = g.account, PasskeyForm(), None
    if request.method == "POST" and not form.validate_on_submit():
        error = "the browser's answer was not understood: try again"
    elif request.method == "POST":
        first = not registries().has_second_factor(account.id)
        try:
            passkeys.register(account.id, form.credential.data or "", form.name.data)
        except TesseraError as exc:
            error = exc.detail
        else:
            notify.factor_changed(account.id, "passkey_added")
            if first:  # a first second factor: recovery codes for when it is lost
                return security_page(account, codes=recovery.generate(account.id))
            flash("Passkey added.", "info")
            return redirect(url_for("mfa.security"), 303)
    return render_template("mfa/passkey_new.html", form=form, error=error), 400 if error else 200


@bp.post("/account/security/passkeys/<int:passkey_id>/rename")
@account_required
def rename(passkey_id: int):
    form = PasskeyForm()
    if form.validate_on_submit():
        try:
            passkeys.rename(g.account.id, passkey_id, form.name.data)
        except TesseraError as exc:
            flash(exc.detail, "error")
    return redirect(url_for("mfa.security"), 303)


@bp.post("/account/security/passkeys/<int:passkey_id>/remove")
@account_required
def remove(passkey_id: int):
    if stale := recent_login_or_confirm():
        return stale
    if PasskeyForm().validate_on_submit():
        try:
            passkeys.remove(g.account.id, passkey_id)
        except TesseraError as exc:
            flash(exc.detail, "error")
        else:
            notify.factor_changed(g.account.id, "passkey_removed")
            discard_recovery_codes_if_unprotected(g.account.id)
            flash("Passkey removed.", "info")
    return redirect(url_for("mfa.security"), 303)


# --- a passkey as the second step -------------------------------------------------------------

@bp.post("/interaction/<uid>/mfa/passkey/options")
def second_factor_options(uid: str):
    interaction = authorization.load_interaction(uid)
    account = challenged_account(interaction)[0] if interaction is not None else None
    if account is None:
        return _nobody()
    require_uv = passkey_rules(interaction)[1]
    return _options(passkeys.authentication_options, account.id, require_user_verification=require_uv)


@bp.post("/account/login/mfa/passkey/options")
def account_second_factor_options():
    pending = browser_session.get(ACCOUNT_LOGIN_KEY) or {}
    account = db.session.get(Account, pending.get("account") or 0) if pending else None
    if account is None or not account.is_active:
        return _nobody()
    return _options(passkeys.authentication_options, account.id, require_user_verification=False)


# --- passwordless login ------------------------------------------------------------------------

def _login_failed(detail: str, back: str, status: int = 401):
    return render_template("mfa/passkey_error.html", error=detail, back=back), status


@bp.post("/interaction/<uid>/passkey/options")
def login_options(uid: str):
    if authorization.load_interaction(uid) is None:
        return problem(400, "Login expired", "this login page expired: go back to the site and start again",
                       reason="interaction_expired")
    return _options(passkeys.authentication_options, None, require_user_verification=True)


@bp.post("/interaction/<uid>/passkey")
def login(uid: str):
    """A site's login with a passkey: done at once (the passkey verified the person: loa:3)."""
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return render_template("errors/interaction_expired.html"), 400
    back = url_for("accounts.login", uid=uid)
    form = PasskeyForm()
    if not form.validate_on_submit() or not form.credential.data:
        return _login_failed("the browser sent no passkey: try again", back, 400)
    try:
        account, methods = passkeys.login(form.credential.data, client_id=interaction.client.id)
    except BudgetSpent:
        raise  # the 429 page with Retry-After, like every spent credential budget
    except TesseraError as exc:
        return _login_failed(exc.detail, back, exc.status)
    return finish_login(interaction, account, methods)


@bp.post("/account/login/passkey/options")
def account_login_options():
    return _options(passkeys.authentication_options, None, require_user_verification=True)


@bp.post("/account/login/passkey")
def account_login():
    """The account center's login with a passkey."""
    back = url_for("account.login")
    form = PasskeyForm()
    if not form.validate_on_submit() or not form.credential.data:
        return _login_failed("the browser sent no passkey: try again", back, 400)
    try:
        account, methods = passkeys.login(form.credential.data)
    except BudgetSpent:
        raise
    except TesseraError as exc:
        return _login_failed(exc.detail, back, exc.status)
    return enter_account_center(account, methods)
