"""A demo relying party ("partner site") of the Tessera hub.

One process is one site: its own client registration, its own origin and its own in-memory
session store. Run several on different ports (and hosts: ``127.0.0.1`` and ``localhost`` are
different *sites* for the browser) to see single sign-on and single logout across the group.

What it speaks, all through Authlib's Flask OAuth client (``authlib.integrations.flask_client``):

* ``/login`` → authorization code flow with PKCE (S256), ``state`` and ``nonce``;
* ``/callback`` → code exchange, ID token validated by Authlib (signature against the hub's JWKS,
  ``iss``, ``aud``, ``exp``, ``nonce``, ``at_hash``), then a server-side session keyed by a cookie;
* ``/`` → silent sign-on: a visitor without a local session is sent once through a top-level
  ``prompt=none`` authorization (the default path that works without third-party cookies), and a
  logged-in page runs the Session Management 1.0 iframe check (an extra that fails safe);
* ``/logout`` → RP-Initiated Logout 1.0 (``id_token_hint``, ``client_id``,
  ``post_logout_redirect_uri``, ``state``);
* ``/frontchannel-logout`` → Front-Channel Logout 1.0 (``iss`` + ``sid``);
* ``/backchannel-logout`` → Back-Channel Logout 1.0 (a signed logout token, ``jti`` de-duplicated);
* ``/initiate-login`` → third-party-initiated login (OIDC Core 4), used by the hub's login chain;
* ``/events`` → Security Event Token push receiver (RFC 8935): the hub's "account merged"
  event moves the absorbed sub's business data into the survivor's (``business.py``);
* ``/addresses`` → the shared address book (``addresses.py``): read and written through the hub's
  partner data API with the site's own client-credentials token, a local copy with each entry's
  ETag, ``If-Match`` on every change; the hub's "claims changed" SET at ``/events`` makes the site
  re-read a person's book, so a change made at another site shows up here without polling;
* ``/business/*`` → the site's own business data (coins with a ledger, points and member level,
  favourites), shown on the home page;
* ``/debug/sessions`` → the local sessions and the logout notifications received, as JSON;
  ``/debug/business``, ``/debug/seed`` and ``/debug/addresses`` only with ``--debug-endpoints``
  (the e2e tests).

It is a demo: sessions and business data live in dicts of this process and vanish when it stops.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, jsonify, redirect, render_template_string, request, session, url_for
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from examples.rp_site.addresses import AddressBooks, PartnerApi, PartnerApiError, clean_entry
from examples.rp_site.business import MERGE_CREDIT_LABEL, BusinessStore, level_for  # noqa: F401

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Errors a prompt=none authorization answers when the hub needs the user (OIDC Core 3.1.2.6).
INTERACTION_ERRORS = {"login_required", "interaction_required", "consent_required", "account_selection_required"}
#: How long the marker that stops silent sign-on from looping lives (seconds).
SILENT_MARKER_TTL = 30
#: How long hub metadata (discovery) is cached before it is read again (seconds).
METADATA_TTL = 300
LOGOUT_TOKEN_ALGS = ["RS256", "PS256", "ES256"]
SET_ALGS = LOGOUT_TOKEN_ALGS
#: The hub's "account merged" Security Event Token (RFC 8417) event.
MERGED_EVENT = "urn:tessera:event:account-merged"
#: The hub's "claims changed" SET of the partner data API (a shared claim of a person changed).
CLAIMS_CHANGED_EVENT = "urn:tessera:event:claims-changed"
SET_CONTENT_TYPE = "application/secevent+jwt"
#: What the home page's buttons earn.
EARN_COINS, EARN_POINTS = 10, 40
CLOCK_LEEWAY = 60


@dataclass
class SiteConfig:
    name: str
    issuer: str
    client_id: str
    client_secret: str
    base_url: str
    color: str = "#2f5d8a"
    scope: str = "openid profile email"
    silent_login: bool = True
    session_check_interval: float = 5.0
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 5001
    #: /debug/business, /debug/seed and /debug/addresses (tests only: anyone could read or
    #: write any sub's data)
    debug_endpoints: bool = False
    #: the hub's partner data API (default: <issuer>/api)
    partner_api: str | None = None

    @property
    def cookie_prefix(self) -> str:
        # Cookies do not isolate ports: every site on 127.0.0.1 (and the hub) shares one cookie
        # jar, so each site's cookie names carry its client id.
        return "rp_" + re.sub(r"[^A-Za-z0-9]", "_", self.client_id)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass
class LocalSession:
    key: str
    sub: str
    sid: str | None
    id_token: str
    claims: dict
    session_state: str | None
    via: str
    created_at: float = field(default_factory=time.time)
    #: False once the Session Management iframe proved unreliable in this browser.
    session_check: bool = True

    def to_dict(self) -> dict:
        return {"sid": self.sid, "sub": self.sub, "via": self.via, "created_at": self.created_at,
                "session_state": self.session_state, "acr": self.claims.get("acr"), "amr": self.claims.get("amr")}


class SessionStore:
    """Local sessions of this site (cookie value → session), the logout notifications received
    and the back-channel ``jti`` values already processed. Thread-safe; in memory."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sessions: dict[str, LocalSession] = {}
        self.logouts: list[dict] = []
        self._seen_jti: dict[str, float] = {}

    def get(self, key: str | None) -> LocalSession | None:
        if not key:
            return None
        with self._lock:
            return self.sessions.get(key)

    def put(self, local: LocalSession) -> None:
        with self._lock:
            self.sessions[local.key] = local

    def drop(self, key: str | None) -> LocalSession | None:
        with self._lock:
            return self.sessions.pop(key, None) if key else None

    def drop_matching(self, *, sid: str | None = None, sub: str | None = None) -> list[LocalSession]:
        """Remove every session with this ``sid`` (when given), else every session of ``sub``."""
        with self._lock:
            if sid:
                doomed = [k for k, s in self.sessions.items() if s.sid == sid]
            elif sub:
                doomed = [k for k, s in self.sessions.items() if s.sub == sub]
            else:
                doomed = []
            return [self.sessions.pop(k) for k in doomed]

    def record_logout(self, **event) -> None:
        with self._lock:
            self.logouts.append(dict(event, at=time.time()))
            del self.logouts[:-200]

    def first_use_of_jti(self, jti: str, exp: float) -> bool:
        """True the first time ``jti`` is seen (until it expires); False for a replay."""
        now = time.time()
        with self._lock:
            for old in [j for j, e in self._seen_jti.items() if e < now]:
                del self._seen_jti[old]
            if jti in self._seen_jti:
                return False
            self._seen_jti[jti] = max(exp, now) + CLOCK_LEEWAY
            return True

    def snapshot(self) -> dict:
        with self._lock:
            return {"sessions": [s.to_dict() for s in self.sessions.values()], "logouts": list(self.logouts)}


class LogoutTokenError(Exception):
    pass


class SetError(Exception):
    """A refused Security Event Token; ``err`` is an RFC 8935 section 2.4 error code."""

    def __init__(self, err: str, description: str):
        super().__init__(description)
        self.err, self.description = err, description


def create_app(config: SiteConfig) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key or secrets.token_urlsafe(32),
        SESSION_COOKIE_NAME=f"{config.cookie_prefix}_flow",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # the callback is a top-level GET from the hub
        SESSION_COOKIE_SECURE=config.base_url.startswith("https://"),
    )
    app.extensions["rp_site"] = config
    store = SessionStore()
    app.extensions["rp_store"] = store
    business = BusinessStore()
    app.extensions["rp_business"] = business
    books = AddressBooks(PartnerApi(base_url=config.partner_api or f"{config.issuer}/api",
                                    token_endpoint=lambda: metadata()["token_endpoint"],
                                    client_id=config.client_id, client_secret=config.client_secret),
                         logger=app.logger)
    app.extensions["rp_addresses"] = books
    session_cookie = f"{config.cookie_prefix}_session"
    silent_marker = f"{config.cookie_prefix}_silent"
    callback_url = f"{config.base_url}/callback"
    home_url = f"{config.base_url}/"

    oauth = OAuth(app)
    hub = oauth.register(
        name="hub",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": config.scope, "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic", "timeout": 10},
    )

    # --- helpers ---------------------------------------------------------------------------

    def metadata() -> dict:
        loaded = hub.server_metadata.get("_loaded_at")
        if loaded is not None and time.time() - loaded > METADATA_TTL:
            hub.server_metadata.clear()
        data = hub.load_server_metadata()
        if data.get("issuer") != config.issuer:
            hub.server_metadata.clear()
            raise OAuthError(error="invalid_issuer",
                             description=f"discovery names issuer {data.get('issuer')!r}, expected {config.issuer!r}")
        return data

    def current() -> LocalSession | None:
        return store.get(request.cookies.get(session_cookie))

    def csrf_for(local: LocalSession) -> str:
        return hmac.new(app.secret_key.encode(), b"logout:" + local.key.encode(), "sha256").hexdigest()

    def local_path(target: str | None) -> str:
        """Only paths on this site (no open redirect)."""
        if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
        return "/"

    def start_authorization(*, mode: str, next_url: str, prompt: str | None = None, login_hint: str | None = None):
        """mode: login | silent | check | initiate (back to our page) | initiate-hub (back to the hub)."""
        state = generate_token(32)
        session[f"flow_{state}"] = {"mode": mode, "next": next_url, "started": time.time()}
        extra = {}
        if prompt:
            extra["prompt"] = prompt
        if login_hint:
            extra["login_hint"] = login_hint
        metadata()
        return hub.authorize_redirect(callback_url, state=state, **extra)

    def page(template: str, status: int = 200, **context):
        html = render_template_string(PAGE, body=render_template_string(template, **context), config=config)
        return html, status, {"Cache-Control": "no-store"}

    def error_page(error: str, description: str | None, status: int = 400):
        return page(ERROR_BODY, status, error=error, description=description)

    # --- pages -------------------------------------------------------------------------------

    @app.get("/")
    def index():
        local = current()
        logged_out_here = False
        state = request.args.get("state")
        if state and local is None:
            # the hub sends us back here after RP-initiated logout (post_logout_redirect_uri?state=)
            try:
                hub.validate_logout_response()
                logged_out_here = True
            except OAuthError:
                pass
        if local is None and config.silent_login and not logged_out_here \
                and not request.cookies.get(silent_marker) and "error" not in request.args:
            # Silent sign-on (flow 2): one top-level prompt=none round trip to the hub. The marker
            # cookie stops it from repeating while the visitor stays logged out.
            try:
                response = start_authorization(mode="silent", next_url=local_path(request.full_path.rstrip("?")),
                                               prompt="none")
            except Exception as exc:  # the hub is down: show the page logged out
                app.logger.warning("silent sign-on skipped: %s", exc)
            else:
                response.set_cookie(silent_marker, "1", max_age=SILENT_MARKER_TTL, httponly=True, samesite="Lax")
                return response
        check = None
        if local is not None and local.session_check and local.session_state and config.session_check_interval > 0:
            try:
                iframe = metadata().get("check_session_iframe")
            except Exception:
                iframe = None
            if iframe:
                parts = urlsplit(iframe)
                check = {"iframe": iframe, "origin": f"{parts.scheme}://{parts.netloc}",
                         "interval_ms": int(config.session_check_interval * 1000),
                         "message": f"{config.client_id} {local.session_state}"}
        response = page(INDEX_BODY, local=local, csrf=csrf_for(local) if local else None, check=check,
                        data=business.view(local.sub) if local else None, earn={"coins": EARN_COINS,
                                                                                 "points": EARN_POINTS},
                        logged_out_here=logged_out_here, error=request.args.get("error"),
                        error_description=request.args.get("error_description"))
        if logged_out_here:
            response[2]["Set-Cookie"] = f"{silent_marker}=1; Max-Age={SILENT_MARKER_TTL}; Path=/; HttpOnly; SameSite=Lax"
        return response

    @app.get("/login")
    def login():
        prompt = request.args.get("prompt")
        if prompt not in (None, "", "none", "login", "consent", "select_account"):
            abort(400)
        mode = {"none": "check" if request.args.get("reason") == "check" else "silent"}.get(prompt, "login")
        try:
            return start_authorization(mode=mode, next_url=local_path(request.args.get("next")), prompt=prompt or None,
                                       login_hint=request.args.get("login_hint"))
        except OAuthError as exc:
            return error_page(exc.error, exc.description, 502)
        except Exception as exc:
            return error_page("hub_unreachable", str(exc), 502)

    @app.get("/callback")
    def callback():
        state = request.args.get("state") or ""
        flow = session.pop(f"flow_{state}", None)
        if flow is None:
            hub.framework.clear_state_data(session, state)
            return error_page("invalid_state", "This authorization response does not answer a request of this browser.")
        mode, next_url = flow["mode"], flow["next"]
        # RFC 9207: a response that names an issuer must name ours (mix-up defence).
        iss = request.args.get("iss")
        if iss is not None and iss != config.issuer:
            hub.framework.clear_state_data(session, state)
            return error_page("invalid_issuer", f"the response came from {iss!r}")

        error = request.args.get("error")
        if error:
            hub.framework.clear_state_data(session, state)
            if mode == "initiate-hub":
                return redirect(next_url)  # the login chain continues at the hub, success or not
            if mode in ("silent", "check") and error in INTERACTION_ERRORS:
                if mode == "check":
                    # the Session Management check saw a change and the hub has no session: log out here
                    store.drop(request.cookies.get(session_cookie))
                response = redirect(local_path(next_url) if mode == "silent" else "/")
                response.set_cookie(silent_marker, "1", max_age=SILENT_MARKER_TTL, httponly=True, samesite="Lax")
                return response
            return error_page(error, request.args.get("error_description"))

        previous = current()
        try:
            token = hub.authorize_access_token(claims_options={"iss": {"essential": True, "value": config.issuer}})
        except (OAuthError, JoseError, ValueError, KeyError) as exc:
            if mode == "initiate-hub":
                return redirect(next_url)
            return error_page(getattr(exc, "error", None) or type(exc).__name__,
                              getattr(exc, "description", None) or str(exc))
        claims = dict(token.get("userinfo") or {})
        if not claims.get("sub"):
            return error_page("invalid_token", "no ID token in the token response")
        if previous is not None and mode == "check" and previous.sid == claims.get("sid") \
                and previous.sub == claims["sub"]:
            # The iframe said "changed" but the hub session is the same one: the iframe cannot see
            # the hub's cookie in this browser (third-party cookies blocked). Stop asking it.
            previous.session_state = request.args.get("session_state") or previous.session_state
            previous.id_token = token["id_token"]
            previous.session_check = False
            return redirect("/")
        store.drop(request.cookies.get(session_cookie))
        local = LocalSession(
            key=secrets.token_urlsafe(32), sub=claims["sub"], sid=claims.get("sid"), id_token=token["id_token"],
            claims=claims, session_state=request.args.get("session_state"),
            via={"initiate-hub": "initiate-login", "initiate": "initiate-login"}.get(mode, mode),
        )
        store.put(local)
        target = next_url if mode == "initiate-hub" else local_path(next_url)
        response = redirect(target)
        response.set_cookie(session_cookie, local.key, httponly=True, samesite="Lax",
                            secure=config.base_url.startswith("https://"), path="/")
        response.delete_cookie(silent_marker)
        return response

    @app.post("/logout")
    def logout():
        local = current()
        if local is None:
            return redirect("/")
        if not hmac.compare_digest(request.form.get("csrf", ""), csrf_for(local)):
            abort(400)
        store.drop(local.key)
        try:
            metadata()
            response = hub.logout_redirect(post_logout_redirect_uri=home_url, id_token_hint=local.id_token,
                                           client_id=config.client_id)
        except Exception as exc:  # no end_session_endpoint: at least this site is logged out
            app.logger.warning("RP-initiated logout impossible: %s", exc)
            response = redirect(url_for("index", error="logout_incomplete",
                                        error_description=f"the hub was not told: {exc}"))
        response.delete_cookie(session_cookie, path="/")
        response.set_cookie(silent_marker, "1", max_age=SILENT_MARKER_TTL, httponly=True, samesite="Lax")
        return response

    @app.get("/frontchannel-logout")
    def frontchannel_logout():
        iss, sid = request.args.get("iss"), request.args.get("sid")
        headers = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}
        if iss is not None and iss != config.issuer:
            store.record_logout(channel="front", sid=sid, cleared=0, error="wrong issuer")
            return "wrong issuer", 400, headers
        if sid:
            cleared = store.drop_matching(sid=sid)
        else:  # no sid: the hub relies on our cookie (sent only when third-party cookies work)
            dropped = store.drop(request.cookies.get(session_cookie))
            cleared = [dropped] if dropped else []
        store.record_logout(channel="front", sid=sid, cleared=len(cleared))
        html = "<!doctype html><title>logged out</title><p>%s: logged out</p>" % config.name
        response = app.make_response((html, 200, headers))
        if cleared:
            response.delete_cookie(session_cookie, path="/")
        return response

    @app.post("/backchannel-logout")
    def backchannel_logout():
        headers = {"Cache-Control": "no-store"}
        try:
            claims = validate_logout_token(request.form.get("logout_token"))
        except LogoutTokenError as exc:
            store.record_logout(channel="back", error=str(exc))
            return jsonify(error="invalid_request", error_description=str(exc)), 400, headers
        if not store.first_use_of_jti(claims["jti"], float(claims["exp"])):
            store.record_logout(channel="back", sid=claims.get("sid"), sub=claims.get("sub"), jti=claims["jti"],
                                cleared=0, duplicate=True)
            return "", 200, headers
        cleared = store.drop_matching(sid=claims.get("sid"), sub=claims.get("sub"))
        store.record_logout(channel="back", sid=claims.get("sid"), sub=claims.get("sub"), jti=claims["jti"],
                            cleared=len(cleared))
        return "", 200, headers

    def validate_logout_token(token: str | None) -> dict:
        """Back-Channel Logout 1.0, 2.6."""
        if not token:
            raise LogoutTokenError("logout_token is missing")
        try:
            meta = metadata()
        except Exception as exc:
            raise LogoutTokenError(f"hub metadata unavailable: {exc}") from None
        algs = [a for a in meta.get("id_token_signing_alg_values_supported", LOGOUT_TOKEN_ALGS) if a in LOGOUT_TOKEN_ALGS]
        try:
            try:
                decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set()), algorithms=algs)
            except InvalidKeyIdError:  # the hub rotated its keys since we last looked
                decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set(force=True)), algorithms=algs)
        except (JoseError, ValueError) as exc:
            raise LogoutTokenError(f"bad signature or format: {exc}") from None
        typ = decoded.header.get("typ")
        if typ is not None and typ.lower() not in ("logout+jwt", "application/logout+jwt"):
            raise LogoutTokenError(f"typ {typ!r} is not logout+jwt")
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.client_id},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise LogoutTokenError(f"claims: {exc}") from None
        if claims["iat"] > time.time() + CLOCK_LEEWAY:
            raise LogoutTokenError("iat is in the future")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise LogoutTokenError("events has no back-channel logout event")
        if "nonce" in claims:
            raise LogoutTokenError("a logout token must not contain a nonce")
        if not claims.get("sid") and not claims.get("sub"):
            raise LogoutTokenError("a logout token names a sid or a sub")
        return claims

    # --- business data ---------------------------------------------------------------------

    def business_action(action):
        local = current()
        if local is None:
            return redirect("/")
        if not hmac.compare_digest(request.form.get("csrf", ""), csrf_for(local)):
            abort(400)
        action(local.sub)
        return redirect("/#business", code=303)

    @app.post("/business/earn-coins")
    def earn_coins():
        return business_action(lambda sub: business.earn_coins(sub, EARN_COINS, "daily check-in"))

    @app.post("/business/earn-points")
    def earn_points():
        return business_action(lambda sub: business.earn_points(sub, EARN_POINTS))

    @app.post("/business/favourite")
    def add_favourite():
        item = (request.form.get("item") or "").strip()[:80]
        if not item:
            return redirect("/#business", code=303)
        return business_action(lambda sub: business.add_favourite(sub, item))

    # --- the shared address book (the hub's partner data API) ----------------------------------

    def addresses_page(local: LocalSession, error: str | None = None, status: int = 200):
        books.ensure(local.sub)
        return page(ADDRESSES_BODY, status, local=local, csrf=csrf_for(local), book=books.view(local.sub),
                    conflicts=books.take_conflicts(local.sub), error=error, notice=request.args.get("done"),
                    fields=ADDRESS_FORM_FIELDS)

    def address_action(action):
        """A logged-in POST with the page's form token; ``action(sub)`` returns the redirect's
        ``done`` notice, or raises PartnerApiError (shown on the page)."""
        local = current()
        if local is None:
            return redirect("/login?next=/addresses")
        if not hmac.compare_digest(request.form.get("csrf", ""), csrf_for(local)):
            abort(400)
        try:
            done = action(local.sub)
        except PartnerApiError as exc:
            app.logger.warning("address book write refused: %s", exc)
            return addresses_page(local, error=str(exc), status=502 if exc.status >= 500 else 200)
        return redirect(url_for("address_book", done=done) if done else url_for("address_book"), code=303)

    def sent_etag(sub: str, address_id: str) -> str:
        """The ETag of the entry as the person saw it (the form's), else the local copy's."""
        etag = (request.form.get("etag") or "").strip()
        if not etag:
            entry = books.entry(sub, address_id)
            etag = (entry or {}).get("etag") or '"unknown"'
        return etag

    @app.get("/addresses")
    def address_book():
        local = current()
        if local is None:
            return redirect("/login?next=/addresses")
        return addresses_page(local)

    @app.post("/addresses")
    def add_address():
        entry = clean_entry(request.form)

        def add(sub):
            if not entry:
                raise PartnerApiError(400, "empty_address", "fill in at least one field")
            books.add(sub, entry)
            return "added"
        return address_action(add)

    @app.post("/addresses/<address_id>/edit")
    def edit_address(address_id: str):
        entry = clean_entry(request.form)

        def edit(sub):
            if not entry:
                raise PartnerApiError(400, "empty_address", "fill in at least one field (or delete the address)")
            return "saved" if books.replace(sub, address_id, entry, sent_etag(sub, address_id)) else None
        return address_action(edit)

    @app.post("/addresses/<address_id>/delete")
    def delete_address(address_id: str):
        return address_action(lambda sub: "deleted" if books.delete(sub, address_id, sent_etag(sub, address_id)) else None)

    @app.post("/addresses/refresh")
    def refresh_addresses():
        def refresh(sub):
            books.refresh(sub, "page")
            return "refreshed"
        return address_action(refresh)

    # --- Security Event Tokens (RFC 8935 push delivery) ----------------------------------------

    @app.post("/events")
    def events():
        headers = {"Cache-Control": "no-store"}
        try:
            media_type = (request.mimetype or "").lower()
            if media_type != SET_CONTENT_TYPE:
                raise SetError("invalid_request", f"Content-Type must be {SET_CONTENT_TYPE}, not {media_type or 'none'!r}")
            claims = validate_set(request.get_data(as_text=True).strip())
        except SetError as exc:
            business.record_event(error=exc.err, description=exc.description)
            return jsonify(err=exc.err, description=exc.description), 400, headers
        jti, txn = claims["jti"], claims.get("txn")
        # one lock for "seen?" + apply + "mark seen": two concurrent deliveries of one SET
        # cannot both act on it
        with business.lock:
            if not business.first_use_of_jti(jti):
                business.record_event(jti=jti, txn=txn, duplicate=True)
                return "", 202, headers
            done = []
            for uri, payload in claims["events"].items():
                if uri == CLAIMS_CHANGED_EVENT:
                    sub, changed = payload["subject"]["sub"], payload["claims"]
                    if "addresses" in changed:
                        # re-read in the background: the hub's delivery is acknowledged at once
                        books.refresh_in_background(sub, "event", jti=jti, txn=txn)
                    done.append({"event": uri, "sub": sub, "claims": changed,
                                 "reread": "addresses" in changed})
                    continue
                if uri != MERGED_EVENT:
                    done.append({"event": uri, "ignored": True})  # RFC 8417: unknown events are ignored
                    continue
                survivor, absorbed = payload["subject"]["sub"], payload["absorbed_subject"]["sub"]
                moved = business.merge(survivor=survivor, absorbed=absorbed)
                dropped = store.drop_matching(sub=absorbed)
                books.merged(survivor=survivor, absorbed=absorbed)
                done.append({"event": uri, "survivor": survivor, "absorbed": absorbed, "moved": moved,
                             "sessions_dropped": len(dropped)})
            business.record_event(jti=jti, txn=txn, events=done)
        return "", 202, headers

    def validate_set(token: str) -> dict:
        """RFC 8417 / RFC 8935 checks: signed by the hub, typ secevent+jwt, iss, aud, iat, jti,
        and a well-formed account-merged event."""
        if not token or token.count(".") != 2:
            raise SetError("invalid_request", "the body is not a signed JWT")
        try:
            meta = metadata()
        except Exception as exc:
            raise SetError("invalid_request", f"hub metadata unavailable: {exc}") from None
        algs = [a for a in meta.get("id_token_signing_alg_values_supported", SET_ALGS) if a in SET_ALGS]
        try:
            try:
                decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set()), algorithms=algs)
            except InvalidKeyIdError:  # the hub rotated its keys since we last looked
                decoded = jwt.decode(token, KeySet.import_key_set(hub.fetch_jwk_set(force=True)), algorithms=algs)
        except InvalidKeyIdError as exc:
            raise SetError("invalid_key", f"signed with a key the hub does not publish: {exc}") from None
        except (JoseError, ValueError) as exc:
            raise SetError("invalid_key" if isinstance(exc, BadSignatureError) else "invalid_request",
                           f"bad signature or format: {exc}") from None
        typ = (decoded.header.get("typ") or "").lower()
        if typ not in ("secevent+jwt", SET_CONTENT_TYPE):
            raise SetError("invalid_request", f"typ {decoded.header.get('typ')!r} is not secevent+jwt")
        claims = decoded.claims
        if claims.get("iss") != config.issuer:
            raise SetError("invalid_issuer", f"iss {claims.get('iss')!r} is not this site's hub")
        aud = claims.get("aud")
        if not (aud == config.client_id or (isinstance(aud, list) and config.client_id in aud)):
            raise SetError("invalid_audience", f"aud {aud!r} does not name this site")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise SetError("invalid_request", "jti is missing")
        if not isinstance(claims.get("iat"), (int, float)) or claims["iat"] > time.time() + CLOCK_LEEWAY:
            raise SetError("invalid_request", "iat is missing or in the future")
        if "exp" in claims and isinstance(claims["exp"], (int, float)) and claims["exp"] < time.time() - CLOCK_LEEWAY:
            raise SetError("invalid_request", "the SET has expired")
        events = claims.get("events")
        if not isinstance(events, dict) or not events:
            raise SetError("invalid_request", "events is missing")
        if BACKCHANNEL_EVENT in events:  # a logout token is not a SET for this endpoint (RFC 8417 2.3)
            raise SetError("invalid_request", "a logout token is not accepted here")
        merged = events.get(MERGED_EVENT)
        if merged is not None:
            if not isinstance(merged, dict):
                raise SetError("invalid_request", "the account-merged event is not an object")
            for member in ("subject", "absorbed_subject"):
                subject = merged.get(member)
                if not isinstance(subject, dict) or subject.get("format") != "iss_sub" \
                        or subject.get("iss") != config.issuer or not isinstance(subject.get("sub"), str) \
                        or not subject["sub"]:
                    raise SetError("invalid_request", f"{member} must be an iss_sub subject of this site's hub")
            if merged["subject"]["sub"] == merged["absorbed_subject"]["sub"]:
                raise SetError("invalid_request", "an account cannot be merged into itself")
        changed = events.get(CLAIMS_CHANGED_EVENT)
        if changed is not None:
            if not isinstance(changed, dict):
                raise SetError("invalid_request", "the claims-changed event is not an object")
            subject = changed.get("subject")
            if not isinstance(subject, dict) or subject.get("format") != "iss_sub" \
                    or subject.get("iss") != config.issuer or not isinstance(subject.get("sub"), str) \
                    or not subject["sub"]:
                raise SetError("invalid_request", "subject must be an iss_sub subject of this site's hub")
            claim_names = changed.get("claims")
            if not isinstance(claim_names, list) or not claim_names \
                    or not all(isinstance(c, str) and c for c in claim_names):
                raise SetError("invalid_request", "claims must be a non-empty list of claim names")
        return claims

    # --- debug endpoints for tests --------------------------------------------------------------

    def debug_only():
        if not config.debug_endpoints:
            abort(404)

    @app.get("/debug/business")
    def debug_business():
        debug_only()
        sub = request.args.get("sub")
        data = business.raw(sub) if sub else business.snapshot()
        response = jsonify(data)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/debug/addresses")
    def debug_addresses():
        """The local copy of a sub's address book (no hub call), or every copy."""
        debug_only()
        sub = request.args.get("sub")
        data = dict(books.view(sub), sub=sub) if sub else books.snapshot()
        response = jsonify(data)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/debug/seed")
    def debug_seed():
        debug_only()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("sub"), str) or not body["sub"]:
            return jsonify(error="invalid_request", error_description="JSON {sub, coins, points, favourites}"), 400
        try:
            member = business.seed(body["sub"], coins=int(body.get("coins") or 0), points=int(body.get("points") or 0),
                                   favourites=list(body.get("favourites") or []))
        except (TypeError, ValueError) as exc:
            return jsonify(error="invalid_request", error_description=str(exc)), 400
        return jsonify(member.to_dict())

    @app.route("/initiate-login", methods=["GET", "POST"])
    def initiate_login():
        """OIDC Core 4: the hub (or anyone — hence the checks) asks us to start a login."""
        args = request.values
        if args.get("iss") != config.issuer:
            return error_page("invalid_request", "iss is missing or is not this site's hub")
        target = args.get("target_link_uri") or ""
        login_hint = args.get("login_hint")
        try:
            if target.startswith(config.issuer + "/"):
                # the hub's login chain: silent authorization, then hand the browser back to the hub
                return start_authorization(mode="initiate-hub", next_url=target, prompt="none")
            parts = urlsplit(target)
            next_url = "/"
            if target and f"{parts.scheme}://{parts.netloc}" == config.origin:
                next_url = local_path(parts.path + (f"?{parts.query}" if parts.query else ""))
            return start_authorization(mode="initiate", next_url=next_url, login_hint=login_hint)
        except Exception as exc:
            if target.startswith(config.issuer + "/"):
                return redirect(target)  # never strand the chain
            return error_page("hub_unreachable", str(exc), 502)

    @app.get("/debug/sessions")
    def debug_sessions():
        response = jsonify(store.snapshot())
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify(ok=True, name=config.name, client_id=config.client_id)

    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ config.name }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
 header { background: {{ config.color }}; color: #fff; padding: .8rem 1.5rem; }
 header h1 { margin: 0; font-size: 1.3rem; }
 main { padding: 1rem 1.5rem; max-width: 60rem; }
 table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
 .error { color: #a00; } .muted { color: #666; }
 button, .button { background: {{ config.color }}; color: #fff; border: 0; padding: .5rem 1rem;
   border-radius: 4px; text-decoration: none; display: inline-block; cursor: pointer; }
</style></head>
<body><header><h1>{{ config.name }}</h1><span class="muted" style="color:#eee">{{ config.base_url }}</span></header>
<main>{{ body|safe }}</main></body></html>
"""

INDEX_BODY = """
{% if local %}
<div id="status" data-state="logged-in">
  <p>Logged in as <strong id="user-name">{{ local.claims.get("name") or local.sub }}</strong></p>
  <p>sub: <code id="sub">{{ local.sub }}</code> · sid: <code id="sid">{{ local.sid }}</code>
     · <span class="muted">via {{ local.via }}</span></p>
</div>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="logout">Log out</button></form>
<section id="business">
<h2>Your account at {{ config.name }}</h2>
<table>
  <tr><th>Coins</th><td id="coins">{{ data.coins }}</td></tr>
  <tr><th>Points</th><td id="points">{{ data.points }}</td></tr>
  <tr><th>Member level</th><td id="level">{{ data.level }}</td></tr>
  <tr><th>Favourites</th><td id="favourites">{{ data.favourites|join(", ") or "none yet" }}</td></tr>
</table>
<p>
<form method="post" action="/business/earn-coins" style="display:inline"><input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="earn-coins">Check in: +{{ earn.coins }} coins</button></form>
<form method="post" action="/business/earn-points" style="display:inline"><input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="earn-points">Buy something: +{{ earn.points }} points</button></form>
</p>
<form method="post" action="/business/favourite"><input type="hidden" name="csrf" value="{{ csrf }}">
  <input name="item" id="favourite-item" placeholder="an item" maxlength="80" required>
  <button type="submit" id="add-favourite">Add to favourites</button></form>
<h3>Coin ledger</h3>
<table id="ledger"><tr><th>amount</th><th>label</th></tr>
{% for line in data.ledger %}<tr class="ledger-line"><td>{{ "%+d"|format(line.amount) }}</td><td>{{ line.label }}</td></tr>
{% else %}<tr><td colspan="2" class="muted">no coins yet</td></tr>{% endfor %}
</table>
</section>
<p><a class="button" id="address-book-link" href="/addresses">Shared address book</a></p>
<h2>ID token claims</h2>
<table id="claims">{% for k, v in local.claims|dictsort %}<tr><th>{{ k }}</th><td><code>{{ v }}</code></td></tr>{% endfor %}</table>
{% if check %}
<iframe id="op-check-session" src="{{ check.iframe }}" title="session check" hidden
        style="display:none" width="0" height="0"></iframe>
<script>
(function () {
  // Session Management 1.0: ask the hub's iframe whether the session changed. Fails safe: any
  // error or silence just stops the checks; "changed" triggers one top-level prompt=none.
  var frame = document.getElementById("op-check-session");
  var origin = {{ check.origin|tojson }}, message = {{ check.message|tojson }}, timer = null;
  function check() { try { frame.contentWindow.postMessage(message, origin); } catch (e) { stop(); } }
  function stop() { if (timer) { clearInterval(timer); timer = null; } }
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || event.source !== frame.contentWindow) return;
    if (event.data === "changed") { stop(); window.location.assign("/login?prompt=none&reason=check&next=/"); }
    else if (event.data === "error") { stop(); }
  });
  frame.addEventListener("load", function () { check(); timer = setInterval(check, {{ check.interval_ms }}); });
})();
</script>
{% endif %}
{% else %}
<div id="status" data-state="logged-out">
  {% if logged_out_here %}<p id="logged-out-message">You have been logged out.</p>{% endif %}
  <p>You are not logged in.</p>
</div>
{% if error %}<p class="error" id="error">{{ error }}{% if error_description %}: {{ error_description }}{% endif %}</p>{% endif %}
<p><a class="button" id="login" href="/login">Log in</a></p>
{% endif %}
"""

ADDRESS_FORM_FIELDS = [("label", "Label (home, office…)"), ("street_address", "Street"), ("locality", "City"),
                       ("region", "Region"), ("postal_code", "Postal code"), ("country", "Country"),
                       ("formatted", "Full address (optional)")]

ADDRESSES_BODY = """
<div id="status" data-state="logged-in">
  <p>Logged in as <strong id="user-name">{{ local.claims.get("name") or local.sub }}</strong>
     · sub <code id="sub">{{ local.sub }}</code> · <a href="/">home</a></p>
</div>
<section id="address-book">
<h2>Shared address book</h2>
<p class="muted">One delivery address book shared with the other partner sites through the hub: a change
made there shows up here by itself (the hub tells this site, which re-reads it).</p>
{% if notice %}<p id="address-notice" class="muted">Address {{ notice }}.</p>{% endif %}
{% if error %}<p class="error" id="address-error">{{ error }}</p>{% endif %}
{% if book.error %}<p class="error" id="address-book-error">The address book could not be read: {{ book.error }}</p>{% endif %}
{% for c in conflicts %}
<div class="error conflict" id="address-conflict" data-id="{{ c.id }}" data-reason="{{ c.reason }}">
  {% if c.reason == "address_not_found" %}
  <p><strong>Not saved:</strong> “{{ c.label }}” was deleted elsewhere (at another site or on the hub) since you
     loaded this page.</p>
  {% else %}
  <p><strong>Not saved:</strong> “{{ c.label }}” was changed elsewhere (at another site or on the hub) since you
     loaded this page; nothing was overwritten. The current version is shown below.</p>
  {% endif %}
  {% if c.attempted %}<p>Your change: <code id="conflict-attempted">{{ c.attempted|tojson }}</code> — apply it again
     to the current version if you still want it.</p>{% endif %}
</div>
{% endfor %}
<ul id="addresses">
{% for e in book.entries %}
<li class="address" data-id="{{ e.id }}" data-etag="{{ e.etag }}">
  <strong class="address-label">{{ e.label or "(no label)" }}</strong>:
  <span class="address-text">{{ [e.street_address, e.locality, e.region, e.postal_code, e.country]|select|join(", ") or e.formatted }}</span>
  <span class="muted">(by {{ e.provenance.client_id or e.provenance.source if e.provenance else "?" }})</span>
  <details><summary>Edit</summary>
  <form method="post" action="/addresses/{{ e.id }}/edit" class="edit-address">
    <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="etag" value="{{ e.etag }}">
    {% for name, label in fields %}<label>{{ label }} <input name="{{ name }}" value="{{ e[name] or '' }}" maxlength="500"></label><br>{% endfor %}
    <button type="submit" class="save-address">Save</button>
  </form>
  </details>
  <form method="post" action="/addresses/{{ e.id }}/delete" class="delete-address" style="display:inline">
    <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="etag" value="{{ e.etag }}">
    <button type="submit" class="delete-address-button">Delete</button>
  </form>
</li>
{% else %}<li class="muted" id="no-addresses">no addresses yet</li>{% endfor %}
</ul>
<h3>Add an address</h3>
<form method="post" action="/addresses" id="add-address">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  {% for name, label in fields %}<label>{{ label }} <input name="{{ name }}" maxlength="500"></label><br>{% endfor %}
  <button type="submit" id="add-address-button">Add</button>
</form>
<form method="post" action="/addresses/refresh"><input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit" id="refresh-addresses">Re-read from the hub</button></form>
</section>
"""

ERROR_BODY = """
<div id="status" data-state="error">
<p class="error">The login did not work: <strong id="error">{{ error }}</strong></p>
{% if description %}<p class="muted" id="error-description">{{ description }}</p>{% endif %}
</div>
<p><a href="/">Back</a></p>
"""
