"""The second-factor step of a login and the step-up of a session (``/interaction/<uid>/mfa``), the
same step for the account center's own login (``/account/login/mfa``), and the person's
``/account/security`` page (authenticator app, recovery codes).

A login reaches the step with its first factor held on the interaction (``pending_account_id``,
``pending_amr``: the same browser only, ``load_interaction``); a step-up (the site asks for more
than the session has) reaches it with the browser's live session. The person then gives a code of
their authenticator app or a recovery code; a person with no second factor whose site requires
one sets up an authenticator app right there. Then the login finishes with both methods in its
``amr`` (``app.oidc.assurance``), or the session is stepped up, and the request resumes.
"""

from __future__ import annotations

from flask import Blueprint, g, make_response, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import Length, Optional

from app.accounts.guards import account_required
from app.accounts.models import Account
from app.accounts.routes import finish_login
from app.accounts.self_service import ACCOUNT_LOGIN_KEY, recent_login_or_confirm
from app.budgets import BudgetSpent
from app.errors import AuthenticationFailed, TesseraError
from app.extensions import db
from app.mfa import recovery, totp
from app.oidc import authorization, logout
from app.oidc.sessions import current_account, current_session, renew_auth_time, set_session_cookie, start_session

bp = Blueprint("mfa", __name__)


class SecondFactorForm(FlaskForm):
    """The page's two forms (a code of the authenticator app, or a recovery code) share one CSRF
    token; the button pressed tells which was sent."""

    code = StringField("Code from your authenticator app", validators=[Optional(), Length(max=12)])
    verify = SubmitField("Verify")
    recovery_code = StringField("Recovery code", validators=[Optional(), Length(max=32)])
    use_recovery = SubmitField("Use recovery code")


class ActionForm(FlaskForm):
    submit = SubmitField("Confirm")


def _label(account: Account) -> str:
    for kind in ("email", "phone"):
        identity = account.identity(kind)
        if identity is not None:
            return identity.value
    return f"account {account.id}"


def _second_factor(account: Account, enrolling: bool):
    """Check the posted form (a code of the authenticator, a recovery code, or the first code of
    an authenticator being set up). (method, None) when right; (None, error) otherwise."""
    form = SecondFactorForm()
    if not form.validate_on_submit():
        return None, None
    try:
        if form.verify.data and form.code.data:
            if enrolling:
                totp.confirm_enrolment(account.id, form.code.data)
            else:
                totp.verify(account.id, form.code.data)
            return "otp", None
        if not enrolling and form.use_recovery.data and form.recovery_code.data:
            recovery.use(account.id, form.recovery_code.data)
            return "otp", None
    except (AuthenticationFailed, BudgetSpent) as exc:
        return None, exc.detail if isinstance(exc, TesseraError) else str(exc)
    except TesseraError as exc:
        return None, exc.detail
    return None, None


def _page(account: Account, *, action: str, error: str | None, cancel: str | None, heading: str, status: int = 200):
    enrolled = totp.factor_of(account.id) is not None
    enrolment = None
    if not enrolled:
        pending = totp.factor_of(account.id, confirmed=False) or totp.start_enrolment(account.id)
        secret, uri, svg = totp.provisioning(pending, _label(account))
        enrolment = {"secret": secret, "uri": uri, "svg": svg}
    return render_template(
        "mfa/challenge.html", action=action, error=error, cancel=cancel, heading=heading, enrolment=enrolment,
        form=SecondFactorForm(formdata=None),
        recovery_left=recovery.remaining(account.id) if enrolled else 0,
    ), status


@bp.route("/interaction/<uid>/mfa", methods=["GET", "POST"])
def challenge(uid: str):
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return render_template("errors/interaction_expired.html"), 400
    hub_session, current = current_session(), current_account()
    if interaction.pending_account_id is not None:
        account = db.session.get(Account, interaction.pending_account_id)
        step_up = False
    elif current is not None and authorization.step_up_only(interaction, hub_session):
        account, step_up = current, True
    else:
        return redirect(url_for("accounts.login", uid=uid))
    if account is None or not account.is_active:
        return redirect(url_for("accounts.login", uid=uid))
    enrolling = totp.factor_of(account.id) is None
    error = None
    if request.method == "POST":
        method, error = _second_factor(account, enrolling)
        if method is not None:
            if step_up:
                renew_auth_time(hub_session, method)
                authorization.complete_login(interaction, hub_session)
                return redirect(url_for("oidc.resume", uid=uid))
            return finish_login(interaction, account, [*(interaction.pending_amr or []), method])
    heading = "Confirm it's you" if step_up else "Two-step verification"
    if enrolling:
        heading = "Set up two-step verification"
    cancel = url_for("accounts.login", uid=uid)
    return _page(account, action=request.path, error=error, cancel=cancel, heading=heading, status=401 if error else 200)


# --- the account center's own login (its first factor held by app.accounts.self_service.login) ----

@bp.route("/account/login/mfa", methods=["GET", "POST"])
def account_login():
    pending = session.get(ACCOUNT_LOGIN_KEY) or {}
    account = db.session.get(Account, pending.get("account") or 0) if pending else None
    if account is None or not account.is_active or totp.factor_of(account.id) is None:
        session.pop(ACCOUNT_LOGIN_KEY, None)
        return redirect(url_for("account.login"))
    error = None
    if request.method == "POST":
        method, error = _second_factor(account, enrolling=False)
        if method is not None:
            session.pop(ACCOUNT_LOGIN_KEY, None)
            previous = current_session()
            new_session, cookie_value = start_session(account, amr=[*pending.get("amr", []), method])
            logout.replace_session(previous, new_session)
            response = make_response(redirect(url_for("account.index")))
            set_session_cookie(response, cookie_value, new_session)
            return response
    return _page(account, action=request.path, error=error, cancel=url_for("account.login"),
                 heading="Two-step verification", status=401 if error else 200)


# --- /account/security ---------------------------------------------------------------------------

@bp.get("/account/security")
@account_required
def security():
    account = g.account
    return render_template(
        "mfa/security.html", account=account, totp_enrolled=totp.factor_of(account.id) is not None,
        recovery_left=recovery.remaining(account.id), form=ActionForm(), codes=None,
        session_acr=g.hub_session.acr, session_amr=g.hub_session.amr or [],
    )


@bp.route("/account/security/totp", methods=["GET", "POST"])
@account_required
def totp_setup():
    """Set up an authenticator app (after a recent login): scan, then type its first code."""
    if stale := recent_login_or_confirm():
        return stale
    account = g.account
    if totp.factor_of(account.id) is not None:
        return redirect(url_for("mfa.security"))
    error = None
    if request.method == "POST":
        method, error = _second_factor(account, enrolling=True)
        if method is not None:
            renew_auth_time(g.hub_session, method)
            codes = recovery.generate(account.id)
            return render_template("mfa/security.html", account=account, totp_enrolled=True, codes=codes,
                                   recovery_left=len(codes), form=ActionForm(), session_acr=g.hub_session.acr,
                                   session_amr=g.hub_session.amr or [])
    return _page(account, action=request.path, error=error, cancel=url_for("mfa.security"),
                 heading="Set up an authenticator app", status=401 if error else 200)


@bp.post("/account/security/totp/remove")
@account_required
def totp_remove():
    if stale := recent_login_or_confirm():
        return stale
    if ActionForm().validate_on_submit():
        totp.remove(g.account.id)
        recovery.discard(g.account.id, actor="self")
        db.session.commit()
    return redirect(url_for("mfa.security"), 303)


@bp.post("/account/security/recovery-codes")
@account_required
def recovery_codes():
    """A new set of recovery codes, shown once (the old set stops working)."""
    if stale := recent_login_or_confirm():
        return stale
    account = g.account
    if not ActionForm().validate_on_submit() or totp.factor_of(account.id) is None:
        return redirect(url_for("mfa.security"), 303)
    codes = recovery.generate(account.id)
    return render_template("mfa/security.html", account=account, totp_enrolled=True, codes=codes,
                           recovery_left=len(codes), form=ActionForm(), session_acr=g.hub_session.acr,
                           session_amr=g.hub_session.amr or [])
