"""A user merges two accounts of theirs from /account: logged in to one, they prove control of
the other (a code sent to its phone, or its password — followed by that code when the account
has a verified phone), look at the preview, pick the account that stays, and confirm. Every
proof draws on the shared credential budget (app.accounts.budget). A phone binding that met an account with data arrives here with the
code already proven."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, g, redirect, render_template, session, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, RadioField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from app.accounts import login, otp
from app.accounts.guards import account_required
from app.error_pages import render_domain_error
from app.errors import AuthenticationFailed, NeedsMerge, TesseraError
from app.merging.preview import preview_merge
from app.merging.requests import AccountBusy, auto_merge_allowed
from app.merging.run import merge_accounts

bp = Blueprint("merging", __name__, url_prefix="/account/merge")

#: Seconds a proof of the other account stays good for the merge.
PROOF_TTL = 600


class ProveForm(FlaskForm):
    login = StringField("Phone, email or username of the other account", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Its password (leave empty to get a code on its phone instead)", validators=[Length(max=1024)])
    submit = SubmitField("Continue")


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(min=6, max=6)])
    submit = SubmitField("Confirm")


class ConfirmForm(FlaskForm):
    survivor = RadioField("Keep", choices=["this", "other"], default="this")
    regrant_consents = BooleanField("Let the sites I allowed on the other account keep their access")
    submit = SubmitField("Merge the accounts")


def remember_proof(other_account_id: int, method: str) -> None:
    """Record, in this browser's signed session, that the user proved control of another account."""
    session["merge_proof"] = {"other": other_account_id, "method": method, "at": int(time.time()),
                              "account": g.account.id}


def offer_merge(error: NeedsMerge):
    """Error handler for ``NeedsMerge`` (registered by ``app.merging.wiring``): a phone binding on
    /account met another account with data, and the code just proved the number — the anchor of
    that account, which is the proof a merge needs. Merge at once where automatic merges are on,
    else offer the merge with the proof remembered. Anywhere else: the plain 409."""
    if g.get("account") is None:
        return render_domain_error(error)
    if auto_merge_allowed(g.account.id):
        try:
            record = merge_accounts(g.account.id, error.other_account_id, origin=error.origin,
                                    reason=error.reason, actor="self")
        except TesseraError as merge_error:
            flash(merge_error.detail, "error")
            return redirect(url_for("account.index"))
        return render_template("merging/done.html", record=record, kept_this=True)
    remember_proof(error.other_account_id, error.origin)
    return render_template("account/needs_merge.html", detail=error.detail), 409


def _proof() -> int | None:
    proof = session.get("merge_proof") or {}
    if proof.get("account") != g.account.id or time.time() - proof.get("at", 0) > PROOF_TTL:
        return None
    return proof.get("other")


def _send_code(form, other, phone: str, after: str | None = None):
    """A merge code to the other account's phone; the code page then completes the proof."""
    try:
        challenge = otp.send_code(phone, "merge", account_id=g.account.id)
    except TesseraError as exc:
        flash(exc.detail, "error")
        return render_template("merging/start.html", form=form), exc.status
    session["merge_otp"] = {"uid": challenge.uid, "other": other.id, "after": after}
    return redirect(url_for("merging.code"))


@bp.route("/", methods=["GET", "POST"])
@account_required
def start():
    form = ProveForm()
    if form.validate_on_submit():
        if form.password.data:
            try:
                # On the credential budget like every password check, with this person as the prover.
                other = login.authenticate_password(form.login.data, form.password.data, logged_in=g.account.id)
            except (AuthenticationFailed, AccountBusy) as exc:
                flash(exc.detail, "error")
                return render_template("merging/start.html", form=form), 401
            if other.id == g.account.id:
                flash("That is the account you are logged in to.", "error")
                return render_template("merging/start.html", form=form), 400
            phone = other.identity("phone")
            if phone is not None and phone.verified:
                # A password alone does not absorb an account that has a verified phone: its code too.
                return _send_code(form, other, phone.value, after="pwd")
            remember_proof(other.id, "pwd")
            return redirect(url_for("merging.preview"))
        identity = login.find_identity(form.login.data)
        other = login.get_active_account(identity.account_id) if identity else None
        phone = other.identity("phone") if other is not None else None
        if phone is not None and other.id != g.account.id:
            return _send_code(form, other, phone.value)
        # The same answer whether or not such an account exists (no enumeration).
        flash("If that account has a phone number, a code was sent to it.", "info")
        return redirect(url_for("merging.code"))
    return render_template("merging/start.html", form=form)


@bp.route("/code", methods=["GET", "POST"])
@account_required
def code():
    form = CodeForm()
    pending = session.get("merge_otp") or {}
    if form.validate_on_submit():
        try:
            if not pending:
                raise AuthenticationFailed("invalid or expired code")
            challenge = otp.verify_code(pending["uid"], form.code.data, "merge")
            if challenge.account_id != g.account.id:
                raise AuthenticationFailed("invalid or expired code")
        except AuthenticationFailed as exc:
            flash(exc.detail, "error")
            return render_template("merging/code.html", form=form), 401
        session.pop("merge_otp", None)
        remember_proof(pending["other"], "pwd+otp" if pending.get("after") == "pwd" else "otp")
        return redirect(url_for("merging.preview"))
    return render_template("merging/code.html", form=form)


@bp.route("/preview", methods=["GET", "POST"])
@account_required
def preview():
    other_id = _proof()
    if other_id is None:
        flash("Prove again that the other account is yours.", "error")
        return redirect(url_for("merging.start"))
    form = ConfirmForm()
    if form.validate_on_submit():
        survivor, absorbed = (g.account.id, other_id) if form.survivor.data == "this" else (other_id, g.account.id)
        # A merge offered after binding the other account's phone keeps that origin (its code was the proof).
        offered_by_binding = session.pop("merge_proof", {}).get("method") == "phone_binding"
        origin, reason = ("phone_binding", "bound a phone that belonged to another account") if offered_by_binding \
            else ("user", "user merged their accounts")
        try:
            record = merge_accounts(survivor, absorbed, origin=origin, reason=reason,
                                    regrant_consents=form.regrant_consents.data, actor="self")
        except TesseraError as exc:
            flash(exc.detail, "error")
            return redirect(url_for("account.index"))
        return render_template("merging/done.html", record=record, kept_this=survivor == g.account.id)
    try:
        keep_this = preview_merge(g.account.id, other_id)
        keep_other = preview_merge(other_id, g.account.id)
    except TesseraError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("account.index"))
    return render_template("merging/preview.html", form=form, keep_this=keep_this, keep_other=keep_other,
                           lease=current_app.config["TESSERA_MERGE_LEASE"])
