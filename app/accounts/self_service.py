"""Account self-service at /account: profile, password (change, or a first one), identities (bind,
rebind, add email, unbind), sessions, connected clients, recent security events (who acted:
app.accounts.history), deregistration. Every page needs the hub session (``/account/login`` starts
one); every change is a CSRF-protected POST to one service, which audits it."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, flash, g, make_response, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import URL, DataRequired, EqualTo, Length, Optional

from app import audit
from app.accounts import binding, credentials, otp
from app.accounts.forms import LoginForm, PhoneForm
from app.accounts.guards import account_required
from app.accounts.history import security_history
from app.accounts.login import authenticate_password, confirm_password, confirm_phone_code
from app.accounts.profile import update_profile
from app.budgets import BudgetSpent
from app.errors import AuthenticationFailed, InvalidInput, NeedsMerge, TesseraError
from app.registries import registries
from app.oidc import connections, logout
from app.oidc.routes import render_logged_out
from app.oidc.sessions import (current_account, current_session, login_age, renew_auth_time, set_session_cookie,
                                start_session)

bp = Blueprint("account", __name__, url_prefix="/account")

PHONE_PURPOSES = {"bind": "Add a phone number", "rebind": "Change your phone number"}
ADDRESS_FIELDS = ("street_address", "locality", "region", "postal_code", "country")


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    nickname = StringField("Nickname", validators=[Optional(), Length(max=100)])
    picture = StringField("Picture (URL)", validators=[Optional(), URL(require_tld=False), Length(max=500)])
    locale = StringField("Locale (e.g. en-US)", validators=[Optional(), Length(max=35)])
    street_address = StringField("Street address", validators=[Optional(), Length(max=200)])
    locality = StringField("City", validators=[Optional(), Length(max=100)])
    region = StringField("Region", validators=[Optional(), Length(max=100)])
    postal_code = StringField("Postal code", validators=[Optional(), Length(max=20)])
    country = StringField("Country", validators=[Optional(), Length(max=100)])
    submit = SubmitField("Save")


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(min=6, max=6)])
    submit = SubmitField("Confirm")


class EmailForm(FlaskForm):
    email = StringField("Email address", validators=[DataRequired(), Length(max=254)])  # checked by the service
    submit = SubmitField("Add email")


class PasswordConfirmForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Confirm")


class PasswordChangeForm(FlaskForm):
    """The current password (when the account has one) and the new one, twice."""

    current = PasswordField("Current password", validators=[Optional(), Length(max=1024)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("password", message="the two new passwords are not the same")])
    submit = SubmitField("Save password")


class SendCodeForm(FlaskForm):
    send = SubmitField("Send a code")


class ActionForm(FlaskForm):
    """A button that changes something (unbind, revoke, deregister): CSRF token only."""

    submit = SubmitField("Confirm")


def _recent_login_or_confirm():
    """None when the hub session's login is recent enough for a change to how the person logs in
    (``TESSERA_REAUTH_MAX_AGE``); otherwise the redirect to /account/confirm, which comes back to
    this page (a GET) or to /account (a POST, which the person then repeats)."""
    if login_age(g.hub_session) <= current_app.config["TESSERA_REAUTH_MAX_AGE"]:
        return None
    back = request.path if request.method == "GET" else url_for("account.index")
    return redirect(url_for("account.confirm", next=back))


#: For the account pages of features (app/mfa): the same check.
recent_login_or_confirm = _recent_login_or_confirm

#: Flask-session key of an /account/login waiting for its second factor (app/mfa finishes it).
ACCOUNT_LOGIN_KEY = "account_mfa"

_PRINTABLE_PATH = re.compile(r"[\x21-\x7e]+")


def _local_account_path(value: str | None) -> str:
    """Where /account/confirm may send the browser back to: a path of these pages, nothing else.
    Printable ASCII only: a control character (CR, LF, TAB, NUL…) or a non-ASCII one cannot go into
    the Location header (werkzeug refuses it: a 500), and a browser strips some of them."""
    if (value and value.startswith("/account/") and "//" not in value and "\\" not in value
            and _PRINTABLE_PATH.fullmatch(value)):
        return value
    return url_for("account.index")


@bp.route("/confirm", methods=["GET", "POST"])
@account_required
def confirm():
    """Confirm it is you: the account's password, or a code to its verified phone. Renews the
    session's auth_time, then back to where the person was going."""
    account, back = g.account, _local_account_path(request.values.get("next"))
    phone = account.identity("phone")
    phone = phone.value if phone is not None and phone.verified else None
    password_form, send_form, code_form = PasswordConfirmForm(), SendCodeForm(), CodeForm()
    error = None
    # One page, three forms: the field that a form alone has tells which one was sent.
    if account.password_hash and "password" in request.form and password_form.validate_on_submit():
        try:
            confirm_password(account.id, password_form.password.data)
        except AuthenticationFailed as exc:
            error = exc.detail
        else:
            renew_auth_time(g.hub_session, "pwd")
            return redirect(back)
    elif phone and "send" in request.form and send_form.validate_on_submit():
        challenge = _run(otp.send_code, phone, "reauth", account_id=account.id)
        if challenge is not False:
            session["account_reauth"] = challenge.uid
    elif phone and "code" in request.form and code_form.validate_on_submit():
        try:
            confirm_phone_code(account.id, session.get("account_reauth") or "", code_form.code.data)
        except AuthenticationFailed as exc:
            error = exc.detail
        else:
            session.pop("account_reauth", None)
            renew_auth_time(g.hub_session, "sms")
            return redirect(back)
    return render_template(
        "account/confirm.html", password_form=password_form if account.password_hash else None,
        send_form=send_form if phone else None, code_form=code_form if session.get("account_reauth") else None,
        phone=phone, back=back, error=error, minutes=current_app.config["TESSERA_REAUTH_MAX_AGE"] // 60,
    ), 401 if error else 200


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The hub's own login, for people who come to manage their account rather than from a site."""
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            account = authenticate_password(form.login.data, form.password.data)
        except AuthenticationFailed as exc:
            error = exc.detail
        else:
            if registries().has_second_factor(account.id) and not registries().second_factor_waived(account.id):
                session[ACCOUNT_LOGIN_KEY] = {"account": account.id, "amr": ["pwd"]}
                return redirect(url_for(registries().second_factor_pages["account_login"]), 303)
            return enter_account_center(account, ["pwd"])
    return render_template("account/login.html", form=form, error=error), 401 if error else 200


def enter_account_center(account, amr: list[str]):
    """A login to the account center is done (``amr``: how): a new hub session replacing the
    browser's previous one, then /account. Also for features finishing this login (app/mfa)."""
    session.pop(ACCOUNT_LOGIN_KEY, None)
    previous = current_session()
    hub_session, cookie_value = start_session(account, amr=amr)
    logout.replace_session(previous, hub_session)
    response = make_response(redirect(url_for("account.index")))
    set_session_cookie(response, cookie_value, hub_session)
    return response


@bp.get("/")
@account_required
def index():
    account = g.account
    identities = binding.live_identities(account.id)
    return render_template(
        "account/index.html", account=account, identities=identities,
        removable=binding.removable_identities(account, identities),
        has_phone=any(i.kind == "phone" for i in identities),
        sessions=connections.live_sessions(account.id), current_sid=g.hub_session.sid,
        clients=connections.connected_clients(account.id), events=security_history(account.id),
        email_form=EmailForm(), action_form=ActionForm(),
    )


@bp.route("/profile", methods=["GET", "POST"])
@account_required
def profile():
    account = g.account
    address = {f: v for f, v in (account.address or {}).items() if f in ADDRESS_FIELDS} if request.method == "GET" else {}
    form = ProfileForm(obj=account, **address)
    if form.validate_on_submit():
        address = {f: getattr(form, f).data.strip() for f in ADDRESS_FIELDS if (getattr(form, f).data or "").strip()}
        claims = {f: (getattr(form, f).data or "").strip() for f in ("name", "nickname", "picture", "locale")}
        if _run(update_profile, account.id, address=address or None, **claims):
            flash("Profile saved.", "info")
            return redirect(url_for("account.index"))
    return render_template("account/profile.html", form=form)


@bp.route("/password", methods=["GET", "POST"])
@account_required
def password():
    """Change the password (the current one too), or set a first one (an account without one),
    after a recent login; the other sessions end (app.accounts.credentials)."""
    if stale := _recent_login_or_confirm():
        return stale
    first = not g.account.password_hash
    form, error, status = PasswordChangeForm(), None, 200
    if form.validate_on_submit():
        try:
            credentials.change_password(g.account.id, g.hub_session, None if first else form.current.data,
                                        form.password.data)
        except (AuthenticationFailed, InvalidInput) as exc:  # a spent budget stays the 429 page
            error, status = exc.detail, exc.status
        else:
            flash("Password added." if first else "Password changed. Your other sessions were logged out.", "info")
            return redirect(url_for("account.index"))
    elif form.is_submitted():
        error, status = next((errors[0] for errors in form.errors.values() if errors), None), 400
    return render_template("account/password.html", form=form, first=first, error=error), status


@bp.route("/phone/<purpose>", methods=["GET", "POST"])
@account_required
def send_phone_code(purpose: str):
    if purpose not in PHONE_PURPOSES:
        return redirect(url_for("account.index"))
    if purpose == "rebind" and (stale := _recent_login_or_confirm()):
        return stale
    form = PhoneForm()
    if form.validate_on_submit():
        challenge = _run(otp.send_code, form.phone.data, purpose, account_id=g.account.id)
        if challenge is not False:
            # The number the code went to, kept in the signed Flask session for the next step.
            session["account_otp"] = {"uid": challenge.uid, "phone": challenge.phone}
            return redirect(url_for("account.confirm_phone", purpose=purpose, uid=challenge.uid))
    return render_template("account/phone.html", form=form, title=PHONE_PURPOSES[purpose])


@bp.route("/phone/<purpose>/<uid>", methods=["GET", "POST"])
@account_required
def confirm_phone(purpose: str, uid: str):
    if purpose not in PHONE_PURPOSES:
        return redirect(url_for("account.index"))
    if purpose == "rebind" and (stale := _recent_login_or_confirm()):
        return stale
    pending = session.get("account_otp") or {}
    if pending.get("uid") != uid:
        flash("That code request is not from this browser: send a new code.", "error")
        return redirect(url_for("account.send_phone_code", purpose=purpose))
    phone = pending["phone"]
    form = CodeForm()
    if form.validate_on_submit():
        service_call = binding.bind_phone if purpose == "bind" else binding.rebind_phone
        try:
            result = service_call(g.account.id, phone, uid, form.code.data)
        except NeedsMerge:
            # The code proved the number, the anchor of the other account: that is the proof a
            # merge needs. The merge flow decides (its error handler, app.merging.routes).
            session.pop("account_otp", None)
            raise
        except BudgetSpent:
            raise  # the 429 page with Retry-After, like every spent credential budget
        except TesseraError as exc:
            flash(exc.detail, "error")
        else:
            session.pop("account_otp", None)
            flash(_bound_message(result), "info")
            return redirect(url_for("account.index"))
    return render_template("account/code.html", form=form, title=PHONE_PURPOSES[purpose], phone=phone)


@bp.post("/email")
@account_required
def add_email():
    form = EmailForm()
    if form.validate_on_submit():
        if _run(binding.add_email, g.account.id, form.email.data):
            flash("Follow the link we sent to that address to verify it.", "info")
    else:
        flash("Enter a valid email address.", "error")
    return redirect(url_for("account.index"))


@bp.post("/identities/<int:identity_id>/unbind")
@account_required
def unbind(identity_id: int):
    if stale := _recent_login_or_confirm():
        return stale
    if ActionForm().validate_on_submit() and _run(binding.unbind_identity, g.account.id, identity_id) is not False:
        flash("Removed.", "info")
    return redirect(url_for("account.index"))


@bp.post("/sessions/<int:session_id>/revoke")
@account_required
def revoke_session(session_id: int):
    if not ActionForm().validate_on_submit():
        return redirect(url_for("account.index"))
    own = session_id == g.hub_session.id
    frontchannel = _run(connections.revoke_session, g.account.id, session_id)
    if own and frontchannel is not False:
        return render_logged_out(frontchannel, None)  # this browser's own session: a logout
    if frontchannel is not False:
        flash("Session ended.", "info")
    return redirect(url_for("account.index"))


@bp.post("/clients/<int:client_id>/revoke")
@account_required
def revoke_client(client_id: int):
    if ActionForm().validate_on_submit() and _run(connections.revoke_client_access, g.account.id, client_id) is not False:
        flash("Access revoked.", "info")
    return redirect(url_for("account.index"))


@bp.route("/deregister", methods=["GET", "POST"])
@account_required
def deregister():
    if stale := _recent_login_or_confirm():
        return stale
    form = ActionForm()
    if form.validate_on_submit():
        frontchannel = _run(binding.deregister, g.account.id)
        if frontchannel is not False:
            return render_logged_out(frontchannel, None)
    return render_template("account/deregister.html", form=form,
                           days=current_app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"])


# --- helpers ---------------------------------------------------------------------------------

def _run(call, *args, **kwargs):
    """Call a service; a domain error becomes a flashed message and the result False (a spent
    budget stays the 429 page with Retry-After)."""
    try:
        result = call(*args, **kwargs)
    except BudgetSpent:
        raise
    except TesseraError as exc:
        flash(exc.detail, "error")
        return False
    return True if result is None else result


def _bound_message(result: binding.BindResult) -> str:
    if result.closed_account_id:
        return "Phone number added. The unused account it belonged to was closed and its ways to log in now lead here."
    return "Phone number saved."
