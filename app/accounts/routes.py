"""Interaction pages: login and consent. The protocol code sends the browser here with an
interaction id and these pages send it back to ``/authorize/resume/<uid>`` when done."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask import session as browser_session

from app.accounts import binding, phone_login, verification
from app.accounts.forms import (
    CodeForm, ConsentForm, ContinueForm, LoginForm, LogoutForm, PasswordProofForm, PhoneForm, SignUpForm,
)
from app.accounts.identifiers import looks_like_phone
from app.accounts.login import authenticate_password
from app.errors import AuthenticationFailed, InvalidInput, TesseraError
from app.oidc import authorization, logout
from app.oidc.routes import render_logged_out
from app.oidc.sessions import current_account, current_session, set_session_cookie, start_session
from app.registries import registries

bp = Blueprint("accounts", __name__)




def _interaction_or_error(uid):
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return None, (render_template("errors/interaction_expired.html"), 400)
    return interaction, None


def _resume(interaction):
    return redirect(url_for("oidc.resume", uid=interaction.uid))


def logged_in(interaction, account, amr: list[str]):
    """A first factor passed. When the account has a second factor, or the request needs more
    than one factor, the login goes on to the second-factor step (app/mfa); otherwise it is done."""
    need = authorization.interaction_requirement(interaction)
    waived = need.wanted < 2 and registries().second_factor_waived(account.id, interaction.client.tenant.policy)
    if (registries().has_second_factor(account.id) and not waived) or need.minimum >= 2:
        authorization.hold_for_second_factor(interaction, account.id, amr)
        browser_session.pop(OTP_KEY, None)
        return redirect(url_for(registries().second_factor_pages["interaction"], uid=interaction.uid), 303)
    return finish_login(interaction, account, amr)


def finish_login(interaction, account, amr: list[str]):
    """A fresh login: a new hub session replacing the browser's previous one, then back to the
    paused authorization request."""
    previous = current_session()  # read before start_session makes the new one current
    new_session, cookie_value = start_session(account, amr=amr)
    logout.replace_session(previous, new_session)
    authorization.complete_login(interaction, new_session)
    browser_session.pop(OTP_KEY, None)
    response = make_response(_resume(interaction))
    set_session_cookie(response, cookie_value, new_session)
    return response


@bp.route("/interaction/<uid>/login", methods=["GET", "POST"])
def login(uid: str):
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    client = interaction.client
    form = LoginForm()
    continue_form = ContinueForm(prefix="continue")
    session, current = current_session(), current_account()
    error = None
    if request.method == "GET" and current is not None and authorization.step_up_only(interaction, session):
        return redirect(url_for(registries().second_factor_pages["interaction"], uid=interaction.uid))
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
            return logged_in(interaction, account, ["pwd"])
    status = 401 if error else 200
    return render_template(
        "accounts/login.html", form=form, continue_form=continue_form, client=client,
        tenant=client.tenant, current=current if interaction.params.get("prompt") == "select_account" else None,
        error=error, uid=interaction.uid,
    ), status


# --- log in or sign up with a one-time code (app.accounts.phone_login) -------------------------
#: Flask-session key of the pending code: {"interaction": uid, "challenge": uid}. It never says
#: whether the number is registered (the session cookie is readable by its holder).
OTP_KEY = "otp"



def _pending_challenge(uid: str) -> str | None:
    pending = browser_session.get(OTP_KEY) or {}
    return pending.get("challenge") if pending.get("interaction") == uid else None


def _start_over(uid: str):
    return redirect(url_for("accounts.otp_phone", uid=uid))


def _render_otp(template: str, interaction, status: int = 200, **context):
    client = interaction.client
    return render_template(template, client=client, tenant=client.tenant, uid=interaction.uid, **context), status


@bp.route("/interaction/<uid>/otp", methods=["GET", "POST"])
def otp_phone(uid: str):
    """Step 1: the phone number. The same answer whether or not it is registered."""
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    form = PhoneForm()
    hint = interaction.params.get("login_hint") or ""
    if request.method == "GET" and looks_like_phone(hint):
        form.phone.data = hint
    if form.validate_on_submit():
        try:
            challenge = phone_login.request_code(form.phone.data)
        except TesseraError as exc:  # a bad number, too many codes, the SMS gateway down
            return _render_otp("accounts/otp_phone.html", interaction, exc.status, form=form, error=exc.detail)
        browser_session[OTP_KEY] = {"interaction": uid, "challenge": challenge.uid}
        return redirect(url_for("accounts.otp_code", uid=uid), 303)
    return _render_otp("accounts/otp_phone.html", interaction, form=form, error=None)


@bp.route("/interaction/<uid>/otp/code", methods=["GET", "POST"])
def otp_code(uid: str):
    """Step 2: the code. Wrong codes count against the challenge, which locks."""
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    challenge_uid = _pending_challenge(uid)
    if challenge_uid is None:
        return _start_over(uid)
    form = CodeForm()
    if form.validate_on_submit():
        try:
            result = phone_login.verify(challenge_uid, form.code.data, client_id=interaction.client.id)
        except AuthenticationFailed as exc:
            return _render_otp("accounts/otp_code.html", interaction, 401, form=form, error=exc.detail)
        if result.outcome == "login":
            return logged_in(interaction, result.account, ["sms"])
        if result.outcome == "signup":
            return redirect(url_for("accounts.otp_signup", uid=uid), 303)
        if result.outcome == "dormant":
            return redirect(url_for("accounts.otp_dormant", uid=uid), 303)
        browser_session.pop(OTP_KEY, None)
        return _render_otp("accounts/otp_code.html", interaction, 403, form=form,
                           error="The account of this number is closed or locked.")
    return _render_otp("accounts/otp_code.html", interaction, form=form, error=None)


@bp.route("/interaction/<uid>/otp/signup", methods=["GET", "POST"])
def otp_signup(uid: str):
    """Step 3 for a new number: an optional name and password, then the account exists."""
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    challenge_uid = _pending_challenge(uid)
    form = SignUpForm()
    try:
        phone_login.verified_phone(challenge_uid)
        if form.validate_on_submit():
            account = phone_login.sign_up(challenge_uid, form.name.data, form.password.data,
                                          client_id=interaction.client.id)
            return logged_in(interaction, account, ["sms"])
    except AuthenticationFailed:
        return _start_over(uid)
    except InvalidInput as exc:
        return _render_otp("accounts/otp_signup.html", interaction, 400, form=form, error=exc.detail)
    return _render_otp("accounts/otp_signup.html", interaction, form=form, error=None)


def _render_dormant(interaction, status=200, error=None, proof=None, fresh=None):
    return _render_otp("accounts/otp_dormant.html", interaction, status, error=error,
                       proof=proof or PasswordProofForm(formdata=None), fresh=fresh or SignUpForm(formdata=None))


@bp.route("/interaction/<uid>/otp/dormant", methods=["GET", "POST"])
def otp_dormant(uid: str):
    """Step 3 for a number of a dormant account (maybe recycled by the carrier): that account's
    password too, or a fresh account (``otp_fresh``)."""
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    challenge_uid = _pending_challenge(uid)
    form = PasswordProofForm()
    try:
        phone_login.verified_phone(challenge_uid)
        if form.validate_on_submit():
            account = phone_login.prove_dormant(challenge_uid, form.password.data, client_id=interaction.client.id)
            return logged_in(interaction, account, ["pwd", "sms"])
    except AuthenticationFailed as exc:
        if exc.detail == phone_login.START_OVER:
            return _start_over(uid)
        return _render_dormant(interaction, 401, error=exc.detail)
    return _render_dormant(interaction)


@bp.route("/interaction/<uid>/otp/fresh", methods=["POST"])
def otp_fresh(uid: str):
    interaction, failure = _interaction_or_error(uid)
    if failure:
        return failure
    challenge_uid = _pending_challenge(uid)
    form = SignUpForm()
    if not form.validate_on_submit():
        return _render_dormant(interaction, 400, error="please try again", fresh=form)
    try:
        account = phone_login.start_fresh(challenge_uid, form.name.data, form.password.data,
                                          client_id=interaction.client.id)
    except AuthenticationFailed:
        return _start_over(uid)
    except InvalidInput as exc:
        return _render_dormant(interaction, 400, error=exc.detail, fresh=form)
    return logged_in(interaction, account, ["sms"])


@bp.get("/verify-email/<token>")
def verify_email(token: str):
    """The link of a verification email: marks the address verified, or gives a claimed address
    to the account that asked for it (app.accounts.verification, binding.follow_email_link)."""
    try:
        identity = binding.follow_email_link(token)
    except TesseraError as exc:  # a bad link (400), taken meanwhile (409), a merge under way (503)
        return render_template("accounts/email_verified.html", identity=None, error=exc.detail, tenant=None), exc.status
    return render_template("accounts/email_verified.html", identity=identity, error=None, tenant=None)


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
