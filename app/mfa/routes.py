"""The second-factor step of a login and the step-up of a session (``/interaction/<uid>/mfa``), the
same step for the account center's own login (``/account/login/mfa``), and the person's
``/account/security`` page (authenticator app, passkeys, recovery codes).

A login reaches the step with its first factor held on the interaction (``pending_account_id``,
``pending_amr``: the same browser only, ``load_interaction``); a step-up (the site asks for more
than the session has) reaches it with the browser's live session. The person then gives a code of
their authenticator app, a recovery code, or uses a passkey or security key (its ceremony's
options come from ``app.mfa.passkey_routes``; its answer is posted here); a person with no second
factor whose site requires one sets up an authenticator app right there. A request whose minimum
is phishing-resistant (``urn:tessera:loa:3``) takes a passkey only, the person verified by it.
Then the login finishes with both methods in its ``amr`` (``app.oidc.assurance``), or the session
is stepped up, and the request resumes.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, SubmitField
from wtforms.validators import Length, Optional

from app.accounts.guards import account_required
from app.accounts.models import Account
from app.accounts.routes import finish_login
from app.accounts.self_service import ACCOUNT_LOGIN_KEY, enter_account_center, recent_login_or_confirm
from app.budgets import BudgetSpent
from app.errors import AuthenticationFailed, TesseraError
from app.extensions import db
from app.mfa import notify, passkeys, recovery, sms_factor, totp, trusted
from app.oidc import authorization
from app.oidc.assurance import ACR_PHISHING_RESISTANT, level
from app.oidc.models import Interaction
from app.oidc.sessions import current_account, current_session, renew_auth_time
from app.registries import registries

bp = Blueprint("mfa", __name__)


#: The longest browser answer of a WebAuthn ceremony taken (JSON; an assertion is about 1 KB, a
#: registration with an attestation certificate chain a few).
CREDENTIAL_MAX = 32_768


class SecondFactorForm(FlaskForm):
    """The page's forms (a code of the authenticator app, a recovery code, a passkey's answer)
    share one CSRF token; the button pressed, or the passkey's answer, tells which was sent."""

    code = StringField("Code from your authenticator app", validators=[Optional(), Length(max=12)])
    verify = SubmitField("Verify")
    recovery_code = StringField("Recovery code", validators=[Optional(), Length(max=32)])
    use_recovery = SubmitField("Use recovery code")
    credential = StringField(validators=[Optional(), Length(max=CREDENTIAL_MAX)])
    remember = BooleanField("Remember this browser")
    send_sms = SubmitField("Text me a code")
    sms_code = StringField("Code from the text message", validators=[Optional(), Length(max=12)])
    verify_sms = SubmitField("Verify the texted code")


#: Flask-session key of the SMS code sent for a second step: {"for": <page>, "challenge": uid}.
SMS_KEY = "mfa_sms"


class ActionForm(FlaskForm):
    submit = SubmitField("Confirm")


def account_label(account: Account) -> str:
    """How an authenticator app or a passkey names the account: its email, else its phone."""
    for kind in ("email", "phone"):
        identity = account.identity(kind)
        if identity is not None:
            return identity.value
    return f"account {account.id}"


PASSKEY_ONLY = "this site requires a passkey or security key: a code does not do"


def _second_factor(account: Account, enrolling: bool, *, passkey_only: bool = False,
                   require_user_verification: bool = False, sms: bool = False):
    """Check the posted form (a passkey's answer, a code of the authenticator, a recovery code, or
    the first code of an authenticator being set up). (methods, None) when right — the RFC 8176
    methods it adds — and (None, error) otherwise."""
    form = SecondFactorForm()
    if not form.validate_on_submit():
        return None, None
    try:
        if form.credential.data and not enrolling:
            return passkeys.verify(account.id, form.credential.data,
                                   require_user_verification=require_user_verification), None
        if passkey_only and (form.code.data or form.recovery_code.data):
            return None, PASSKEY_ONLY
        if form.verify.data and form.code.data:
            if enrolling:
                totp.confirm_enrolment(account.id, form.code.data)
            else:
                totp.verify(account.id, form.code.data)
            return ["otp"], None
        if not enrolling and form.use_recovery.data and form.recovery_code.data:
            recovery.use(account.id, form.recovery_code.data)
            return ["otp"], None
        if sms and not passkey_only and form.send_sms.data:
            session[SMS_KEY] = {"for": request.path, "challenge": sms_factor.send(account)}
            return None, None
        pending = session.get(SMS_KEY) or {}
        if sms and not passkey_only and form.verify_sms.data and form.sms_code.data and pending.get("for") == request.path:
            sms_factor.verify(account.id, pending.get("challenge") or "", form.sms_code.data)
            session.pop(SMS_KEY, None)
            return ["sms"], None
    except (AuthenticationFailed, BudgetSpent) as exc:
        return None, exc.detail if isinstance(exc, TesseraError) else str(exc)
    except TesseraError as exc:
        return None, exc.detail
    return None, None


def _page(account: Account, *, action: str, error: str | None, cancel: str | None, heading: str, status: int = 200,
          enrolling: bool = False, passkey_options: str | None = None, passkey_only: bool = False,
          sms: bool = False, remember_days: int = 0):
    """The second-factor page: a passkey when the account has one; the authenticator app's code
    and the recovery codes unless the site requires a passkey; or (``enrolling``) setting up an
    authenticator app."""
    has_totp = totp.factor_of(account.id) is not None
    has_passkey = passkey_options is not None and passkeys.has_passkey(account.id)
    enrolment = None
    if enrolling:
        pending = totp.factor_of(account.id, confirmed=False) or totp.start_enrolment(account.id)
        secret, uri, svg = totp.provisioning(pending, account_label(account))
        enrolment = {"secret": secret, "uri": uri, "svg": svg}
    return render_template(
        "mfa/challenge.html", action=action, error=error, cancel=cancel, heading=heading, enrolment=enrolment,
        form=SecondFactorForm(formdata=None), has_totp=has_totp and not passkey_only,
        passkey_options=passkey_options if has_passkey else None, passkey_only=passkey_only,
        recovery_left=0 if passkey_only or enrolment else recovery.remaining(account.id),
        sms_phone=_masked(sms_factor.verified_phone(account)) if sms and not passkey_only and not enrolment else None,
        sms_sent=(session.get(SMS_KEY) or {}).get("for") == action, remember_days=remember_days,
    ), status


def _remembering(response, account: Account, days: int):
    """The login's answer, remembering this browser when the person ticked the box (and may)."""
    if days > 0 and request.form.get("remember") in ("y", "on", "1", "true"):
        trusted.remember(response, account.id, days)
    return response


def _masked(phone: str | None) -> str | None:
    return None if phone is None else "•" * max(len(phone) - 4, 0) + phone[-4:]


def sms_allowed(account_id: int, first_factor: list[str]) -> bool:
    """SMS as the second step: turned on and usable, and the first factor was not an SMS code."""
    return "sms" not in first_factor and sms_factor.usable(account_id)


def has_usable_second_factor(account: Account, first_factor: list[str]) -> bool:
    """Whether this login can take a second step at all (an SMS-code login of an account whose only
    second factor is SMS cannot)."""
    return (totp.factor_of(account.id) is not None or passkeys.has_passkey(account.id)
            or sms_allowed(account.id, first_factor))


def challenged_account(interaction: Interaction) -> tuple[Account | None, bool]:
    """Whom the second step of ``interaction`` is for: the account whose first factor it holds, or
    the browser's live session's (a step-up); and whether it is a step-up. (None, False): nobody."""
    hub_session, current = current_session(), current_account()
    if interaction.pending_account_id is not None:
        account, step_up = db.session.get(Account, interaction.pending_account_id), False
    elif current is not None and authorization.step_up_only(interaction, hub_session):
        account, step_up = current, True
    else:
        return None, False
    if account is None or not account.is_active:
        return None, False
    return account, step_up


def passkey_rules(interaction: Interaction) -> tuple[bool, bool]:
    """(passkey only, user verification required): a request whose minimum is phishing-resistant
    takes nothing but a passkey; one that wants that level asks the authenticator to verify the
    person (``user``: without it a passkey is one factor, app.oidc.assurance)."""
    need = authorization.interaction_requirement(interaction)
    phishing_resistant = level(ACR_PHISHING_RESISTANT)
    return need.minimum >= phishing_resistant, need.wanted >= phishing_resistant


@bp.route("/interaction/<uid>/mfa", methods=["GET", "POST"])
def challenge(uid: str):
    interaction = authorization.load_interaction(uid)
    if interaction is None:
        return render_template("errors/interaction_expired.html"), 400
    account, step_up = challenged_account(interaction)
    if account is None:
        return redirect(url_for("accounts.login", uid=uid))
    passkey_only, require_uv = passkey_rules(interaction)
    first_factor = (current_session().amr or []) if step_up else (interaction.pending_amr or [])
    sms = sms_allowed(account.id, first_factor)
    if not passkey_only and not has_usable_second_factor(account, first_factor):
        if authorization.interaction_requirement(interaction).wanted < 2:
            # Nothing this login can add (say an SMS-code login whose only second factor is SMS)
            # and the site asks for no more: the first factor is what the person has. A site that
            # wants more gets the person setting up an authenticator app below.
            if step_up:
                authorization.complete_login(interaction, current_session())
                return redirect(url_for("oidc.resume", uid=uid))
            return finish_login(interaction, account, first_factor)
    enrolling = not passkey_only and not has_usable_second_factor(account, first_factor)
    error = None
    if request.method == "POST":
        methods, error = _second_factor(account, enrolling, passkey_only=passkey_only,
                                        require_user_verification=require_uv, sms=sms)
        if methods is not None:
            if step_up:
                hub_session = current_session()
                renew_auth_time(hub_session, *methods)
                authorization.complete_login(interaction, hub_session)
                return redirect(url_for("oidc.resume", uid=uid))
            days = trusted.remember_days(interaction.client.tenant.policy)
            return _remembering(finish_login(interaction, account, [*(interaction.pending_amr or []), *methods]),
                                account, days)
    heading = "Confirm it's you" if step_up else "Two-step verification"
    if enrolling:
        heading = "Set up two-step verification"
    cancel = url_for("accounts.login", uid=uid)
    return _page(account, action=request.path, error=error, cancel=cancel, heading=heading,
                 status=401 if error else 200, enrolling=enrolling, passkey_only=passkey_only,
                 passkey_options=url_for("passkeys.second_factor_options", uid=uid), sms=sms,
                 remember_days=0 if step_up else trusted.remember_days(interaction.client.tenant.policy))


# --- the account center's own login (its first factor held by app.accounts.self_service.login) ----

@bp.route("/account/login/mfa", methods=["GET", "POST"])
def account_login():
    pending = session.get(ACCOUNT_LOGIN_KEY) or {}
    account = db.session.get(Account, pending.get("account") or 0) if pending else None
    if account is None or not account.is_active or not registries().has_second_factor(account.id):
        session.pop(ACCOUNT_LOGIN_KEY, None)
        return redirect(url_for("account.login"))
    error = None
    sms = sms_allowed(account.id, pending.get("amr", []))
    if not has_usable_second_factor(account, pending.get("amr", [])):
        session.pop(ACCOUNT_LOGIN_KEY, None)
        return enter_account_center(account, pending.get("amr", []))
    if request.method == "POST":
        methods, error = _second_factor(account, enrolling=False, sms=sms)
        if methods is not None:
            return _remembering(enter_account_center(account, [*pending.get("amr", []), *methods]), account,
                                trusted.remember_days(None))
    return _page(account, action=request.path, error=error, cancel=url_for("account.login"),
                 heading="Two-step verification", status=401 if error else 200,
                 passkey_options=url_for("passkeys.account_second_factor_options"), sms=sms,
                 remember_days=trusted.remember_days(None))


# --- /account/security ---------------------------------------------------------------------------

def security_page(account: Account, codes: list[str] | None = None, status: int = 200):
    """/account/security, with a new set of recovery ``codes`` shown once."""
    return render_template(
        "mfa/security.html", account=account, totp_enrolled=totp.factor_of(account.id) is not None,
        passkeys=passkeys.credentials_of(account.id), second_factor=registries().has_second_factor(account.id),
        sms_on=sms_factor.chosen(account.id), sms_phone=_masked(sms_factor.verified_phone(account)),
        has_password=bool(account.password_hash), browsers=trusted.browsers_of(account.id),
        recovery_left=recovery.remaining(account.id), form=ActionForm(), codes=codes,
        session_acr=g.hub_session.acr, session_amr=g.hub_session.amr or [],
    ), status


def discard_recovery_codes_if_unprotected(account_id: int) -> None:
    """Recovery codes stand in for a second factor: they go with the last one."""
    if not registries().has_second_factor(account_id):
        recovery.discard(account_id, actor="self")
        db.session.commit()


@bp.get("/account/security")
@account_required
def security():
    return security_page(g.account)


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
        first = not registries().has_second_factor(account.id)
        methods, error = _second_factor(account, enrolling=True)
        if methods is not None:
            renew_auth_time(g.hub_session, *methods)
            notify.factor_changed(account.id, "totp_added")
            return security_page(account, codes=recovery.generate(account.id) if first else None)
    return _page(account, action=request.path, error=error, cancel=url_for("mfa.security"),
                 heading="Set up an authenticator app", status=401 if error else 200, enrolling=True)


@bp.post("/account/security/totp/remove")
@account_required
def totp_remove():
    if stale := recent_login_or_confirm():
        return stale
    if ActionForm().validate_on_submit():
        if totp.remove(g.account.id):
            notify.factor_changed(g.account.id, "totp_removed")
        discard_recovery_codes_if_unprotected(g.account.id)
    return redirect(url_for("mfa.security"), 303)


@bp.post("/account/security/sms")
@account_required
def sms_toggle():
    """Turn codes by SMS as the second step on (``on``) or off, after a recent login."""
    if stale := recent_login_or_confirm():
        return stale
    if ActionForm().validate_on_submit():
        account = g.account
        if request.form.get("on") == "1":
            first = not registries().has_second_factor(account.id)
            was_on = sms_factor.chosen(account.id)
            try:
                sms_factor.turn_on(account)
            except TesseraError as exc:
                flash(exc.detail, "error")
                return redirect(url_for("mfa.security"), 303)
            if not was_on:
                notify.factor_changed(account.id, "sms_on")
            if first:
                return security_page(account, codes=recovery.generate(account.id))
        elif sms_factor.chosen(account.id):
            sms_factor.turn_off(account.id)
            notify.factor_changed(account.id, "sms_off")
            discard_recovery_codes_if_unprotected(account.id)
    return redirect(url_for("mfa.security"), 303)


@bp.post("/account/security/browsers/forget")
@account_required
def forget_browsers():
    """Forget one remembered browser (``browser``) or all of them: their next login asks the second step."""
    if ActionForm().validate_on_submit():
        raw = request.form.get("browser") or ""
        trusted.forget(g.account.id, int(raw) if raw.isdigit() and len(raw) < 10 else None)
    return redirect(url_for("mfa.security"), 303)


@bp.post("/account/security/recovery-codes")
@account_required
def recovery_codes():
    """A new set of recovery codes, shown once (the old set stops working)."""
    if stale := recent_login_or_confirm():
        return stale
    account = g.account
    if not ActionForm().validate_on_submit() or not registries().has_second_factor(account.id):
        return redirect(url_for("mfa.security"), 303)
    return security_page(account, codes=recovery.generate(account.id))
