"""Login with an upstream identity provider, and linking its identities to accounts.

``/upstream/<slug>/start`` sends the browser of a login interaction to the upstream; the
upstream sends it back to ``/upstream/<slug>/callback``; a linked identity logs its account in
and the interaction resumes, an unlinked one goes to ``/upstream/pending/<uid>`` where the user
creates an account or links an existing one with a fresh proof."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for

from app.accounts.login import authenticate_password
from app.accounts.routes import logged_in
from app.accounts.sms import SmsDeliveryFailed
from app.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound, RateLimited
from app.federation import linking, providers, upstream
from app.federation.forms import CreateAccountForm, LinkCodeForm, LinkPasswordForm, LinkPhoneForm
from app.federation.models import PendingUpstreamLogin
from app.net import OutboundError
from app.oidc import authorization

bp = Blueprint("federation", __name__)

#: Flask-session key of the authorization requests sent to upstreams, by state (RFC 6749 10.12:
#: the state binds the callback to this browser). Single use: popped at the callback.
FLOWS_KEY = "upstream_flows"
#: Upstream round trips one browser may have in flight (older ones are forgotten).
MAX_FLOWS = 5
#: Flask-session key of the link codes sent, by pending login: the code page takes the challenge
#: from here, never from the form.
LINK_CODES_KEY = "upstream_link_codes"


@bp.app_context_processor
def _login_buttons():
    def upstream_login_buttons(interaction_uid: str) -> list[dict]:
        return [{"name": p.name, "url": url_for("federation.start", slug=p.slug, interaction=interaction_uid)}
                for p in providers.list_providers(enabled_only=True)]

    return {"upstream_login_buttons": upstream_login_buttons}


def _error_page(detail: str, interaction_uid: str | None = None, status: int = 400):
    back = url_for("accounts.login", uid=interaction_uid) if interaction_uid else None
    return render_template("federation/error.html", detail=detail, back=back), status


def _expired_page():
    return render_template("errors/interaction_expired.html"), 400


def _log_in(interaction, account, amr: list[str]):
    """The upstream login (and any proof) is the first factor: the hub's login goes on as for a
    password (``app.accounts.routes.logged_in``: a second factor when the account has one)."""
    return logged_in(interaction, account, amr)


@bp.get("/upstream/<slug>/start")
def start(slug: str):
    interaction = authorization.load_interaction(request.args.get("interaction", ""))
    if interaction is None:
        return _expired_page()
    try:
        provider = providers.get_provider(slug)
    except NotFound as exc:
        return _error_page(exc.detail, interaction.uid, 404)
    outgoing = upstream.authorization_request(provider)
    flows = dict(session.get(FLOWS_KEY) or {})
    flows[outgoing.state] = {"provider": provider.slug, "interaction": interaction.uid,
                             "verifier": outgoing.code_verifier, "nonce": outgoing.nonce, "at": int(time.time())}
    session[FLOWS_KEY] = dict(sorted(flows.items(), key=lambda kv: kv[1]["at"])[-MAX_FLOWS:])
    return redirect(outgoing.url)


@bp.get("/upstream/<slug>/callback")
def callback(slug: str):
    flows = dict(session.get(FLOWS_KEY) or {})
    flow = flows.pop(request.args.get("state", ""), None)
    session[FLOWS_KEY] = flows
    ttl = current_app.config["TESSERA_INTERACTION_TTL"]
    if flow is None or flow["provider"] != slug or flow["at"] + ttl < time.time():
        # RFC 6749 10.12: a callback this browser did not ask for (forged, replayed or stale).
        return _error_page("This sign-in answer was not expected by this browser (unknown or used state). "
                           "Go back to the site and start again.")
    interaction = authorization.load_interaction(flow["interaction"])
    if interaction is None:
        return _expired_page()
    try:
        provider = providers.get_provider(slug)
    except NotFound as exc:
        return _error_page(exc.detail, interaction.uid, 404)
    if request.args.get("iss") and provider.issuer and request.args["iss"] != provider.issuer:
        # RFC 9207 2.4: an answer from another issuer than the one asked (mix-up attack).
        return _error_page(f"{provider.name} answered with the wrong issuer.", interaction.uid)
    if request.args.get("error"):
        # RFC 6749 4.1.2.1: the upstream refused or the user cancelled there.
        detail = request.args.get("error_description") or request.args["error"]
        return _error_page(f"{provider.name} did not log you in: {detail}", interaction.uid)
    if not request.args.get("code"):
        return _error_page(f"{provider.name} answered without a code.", interaction.uid)

    outgoing = upstream.UpstreamRequest(url="", state="", nonce=flow["nonce"], code_verifier=flow["verifier"])
    try:
        user = upstream.finish_upstream_login(provider, request.args["code"], outgoing)
        outcome = linking.login_or_pend(provider, user, interaction_uid=interaction.uid,
                                        browser_hash=authorization.browser_hash(), client_id=interaction.client_id)
    except upstream.UpstreamError as exc:
        current_app.logger.warning("upstream %s: %s", provider.slug, exc.detail)
        return _error_page(f"Logging in with {provider.name} failed: {exc.detail}", interaction.uid, 502)
    except OutboundError as exc:
        current_app.logger.warning("upstream %s unreachable: %s", provider.slug, exc)
        return _error_page(f"{provider.name} could not be reached. Try again later.", interaction.uid, 502)
    if isinstance(outcome, PendingUpstreamLogin):
        return redirect(url_for("federation.pending", uid=outcome.uid))
    return _log_in(interaction, outcome, amr=["fed"])


def _pending_and_interaction(uid: str):
    pending = linking.load_pending(uid, authorization.browser_hash())
    if pending is None:
        return None, None, _expired_page()
    interaction = authorization.load_interaction(pending.interaction_uid)
    if interaction is None:
        linking.expire_pending(pending)
        return None, None, _expired_page()
    return pending, interaction, None


def _render_pending(pending, interaction, link_form=None, phone_form=None, error=None, status=200):
    provider = linking.pending_provider(pending)
    link_form = link_form or LinkPasswordForm()
    phone_form = phone_form or LinkPhoneForm()
    suggested = linking.suggested_login(pending)
    if suggested and not link_form.login.data:
        link_form.login.data = suggested
    if suggested and suggested.startswith("+") and not phone_form.phone.data:
        phone_form.phone.data = suggested
    client = interaction.client
    return render_template(
        "federation/pending.html", provider=provider, pending=pending, display=linking.display_name(pending.claims or {}),
        create_form=CreateAccountForm(), link_form=link_form, phone_form=phone_form, suggested=suggested, error=error,
        client=client, tenant=client.tenant,
    ), status


@bp.get("/upstream/pending/<uid>")
def pending(uid: str):
    pending, interaction, failure = _pending_and_interaction(uid)
    if failure:
        return failure
    return _render_pending(pending, interaction)


@bp.post("/upstream/pending/<uid>/create")
def create_account(uid: str):
    pending, interaction, failure = _pending_and_interaction(uid)
    if failure:
        return failure
    form = CreateAccountForm()
    if not form.validate_on_submit():
        return _render_pending(pending, interaction, error="The form expired; try again.", status=400)
    try:
        account, _ = linking.create_account_from_pending(pending, client_id=interaction.client_id)
    except Conflict as exc:
        return _error_page(exc.detail, interaction.uid, 409)
    return _log_in(interaction, account, amr=["fed"])


@bp.post("/upstream/pending/<uid>/link")
def link_with_password(uid: str):
    pending, interaction, failure = _pending_and_interaction(uid)
    if failure:
        return failure
    form = LinkPasswordForm()
    if not form.validate_on_submit():
        return _render_pending(pending, interaction, link_form=form, error="Enter the account's identifier and password.",
                               status=400)
    try:
        account = authenticate_password(form.login.data, form.password.data,
                                        tenant_id=interaction.client.tenant_id, client_id=interaction.client_id)
    except AuthenticationFailed as exc:
        return _render_pending(pending, interaction, link_form=form, error=exc.detail, status=401)
    try:
        linking.link_pending(pending, account, proof="pwd", client_id=interaction.client_id)
    except Conflict as exc:
        return _error_page(exc.detail, interaction.uid, 409)
    return _log_in(interaction, account, amr=["fed", "pwd"])


@bp.post("/upstream/pending/<uid>/link/phone")
def send_link_code(uid: str):
    pending, interaction, failure = _pending_and_interaction(uid)
    if failure:
        return failure
    form = LinkPhoneForm()
    if not form.validate_on_submit():
        return _render_pending(pending, interaction, phone_form=form, error="Enter your account's phone number.",
                               status=400)
    try:
        challenge_uid = linking.send_link_code(form.phone.data)
    except (InvalidInput, RateLimited, SmsDeliveryFailed) as exc:
        return _render_pending(pending, interaction, phone_form=form, error=exc.detail, status=exc.status)
    codes = dict(session.get(LINK_CODES_KEY) or {})
    codes[pending.uid] = challenge_uid
    session[LINK_CODES_KEY] = codes
    return redirect(url_for("federation.link_with_code", uid=pending.uid))


@bp.route("/upstream/pending/<uid>/link/code", methods=["GET", "POST"])
def link_with_code(uid: str):
    pending, interaction, failure = _pending_and_interaction(uid)
    if failure:
        return failure
    challenge_uid = (session.get(LINK_CODES_KEY) or {}).get(pending.uid)
    if challenge_uid is None:
        return redirect(url_for("federation.pending", uid=pending.uid))
    form, error = LinkCodeForm(), None
    if form.validate_on_submit():
        try:
            account = linking.account_by_link_code(challenge_uid, form.code.data)
            linking.link_pending(pending, account, proof="otp", client_id=interaction.client_id)
        except AuthenticationFailed as exc:
            error = exc.detail
        except Conflict as exc:
            return _error_page(exc.detail, interaction.uid, 409)
        else:
            codes = dict(session.get(LINK_CODES_KEY) or {})
            codes.pop(pending.uid, None)
            session[LINK_CODES_KEY] = codes
            return _log_in(interaction, account, amr=["fed", "sms"])
    client = interaction.client
    return render_template("federation/link_code.html", form=form, pending=pending, error=error,
                           provider=linking.pending_provider(pending), client=client,
                           tenant=client.tenant), 401 if error else 200
