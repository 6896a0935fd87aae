"""Passkeys and security keys (WebAuthn, with py_webauthn): registering an account's
authenticators, and the assertion ceremonies of a second factor and of a passwordless login.

Rules:

- The relying party is the hub: its RP ID is the host of ``TESSERA_ISSUER`` and the only origin
  accepted is the issuer's ``scheme://host[:port]`` (WebAuthn L2 7.1 steps 9 and 13, 7.2 steps 13
  and 15). A response made for another site (a phishing page) or another RP ID is refused.
- A challenge is 32 random bytes handed to one browser (its Flask session) and stored as its
  SHA-256 for ``CHALLENGE_TTL`` seconds; the response that uses it deletes it first: a challenge
  is never accepted twice, nor from another browser, nor late.
- Registration: attestation "none" (the hub keeps no list of trusted vendors), resident key and
  user verification "preferred", the account's credentials excluded (an authenticator is
  registered once); whether the person was verified and whether the credential is discoverable
  (the credProps extension) are recorded. At most ``MAX_PER_ACCOUNT`` per account.
- An assertion is checked against the account's own credentials (a second factor), or against the
  credential it names (a passwordless login: a discoverable credential names its account, and the
  user handle it returns must be that account's), always on the shared credential budget. A
  signature counter that did not grow, when either value is non-zero, is refused and audited: the
  authenticator may have been cloned (L2 7.2 step 21; ``sign_count`` 0 means it keeps none).
- The methods (RFC 8176) a use adds: ``hwk`` for a device-bound credential on a cross-platform
  authenticator (a security key: the private key never leaves its hardware); ``swk`` for any
  other (a synced passkey — backup eligible — or a platform authenticator, where the hub cannot
  tell a hardware-bound key from a software one); plus ``user`` when the authenticator verified
  the person (PIN, biometrics). The attachment is what the browser reports (not attested).
- A passwordless login requires user verification: the passkey is then something held plus
  something known or inherent, two factors in one phishing-resistant step (``urn:tessera:loa:3``,
  ``app.oidc.assurance``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import NoReturn
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, session
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options, generate_registration_options, options_to_json,
    verify_authentication_response, verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes, bytes_to_base64url, parse_authentication_credential_json, parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference, AuthenticationCredential, AuthenticatorSelectionCriteria, AuthenticatorTransport,
    CredentialDeviceType, PublicKeyCredentialDescriptor, ResidentKeyRequirement, UserVerificationRequirement,
)

from app import audit
from app.accounts.budget import credential_check
from app.accounts.login import AccountInactive, mark_login
from app.accounts.models import Account
from app.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from app.extensions import db
from app.mfa.models import WebAuthnChallenge, WebAuthnCredential
from app.security import utcnow

log = logging.getLogger("tessera.passkeys")

CHALLENGE_TTL = 300
MAX_PER_ACCOUNT = 20
NAME_MAX = 64
#: Flask-session key: {purpose: {"challenge": base64url, "user": base64url (registration)}}.
SESSION_KEY = "webauthn"
PURPOSES = ("register", "second_factor", "login")

START_AGAIN = "this passkey request expired or was used already: try again"
DID_NOT_WORK = "that passkey or security key did not work here: try again or use another way"
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


@dataclass(frozen=True)
class Assertion:
    """A verified use of a credential: its account and the RFC 8176 methods it adds."""

    account_id: int
    credential: WebAuthnCredential
    methods: list[str]


def relying_party() -> tuple[str, str]:
    """(RP ID, origin) of the hub: the issuer's host, and its scheme://host[:port]."""
    issuer = urlsplit(current_app.config["TESSERA_ISSUER"])
    host = (issuer.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(issuer.scheme)
    port = f":{issuer.port}" if issuer.port and issuer.port != default_port else ""
    return host, f"{issuer.scheme}://{host}{port}"


def method_of(attachment: str | None, backup_eligible: bool) -> str:
    """``hwk`` for a device-bound credential of a cross-platform authenticator (a security key),
    ``swk`` otherwise (a synced or platform passkey): the rule of this module's docstring."""
    return "hwk" if attachment == "cross-platform" and not backup_eligible else "swk"


def credentials_of(account_id: int) -> list[WebAuthnCredential]:
    return list(db.session.scalars(db.select(WebAuthnCredential).filter_by(account_id=account_id)
                                   .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)))


def has_passkey(account_id: int) -> bool:
    """Whether the account has a passkey or security key (``registries.second_factors``)."""
    return db.session.scalar(db.select(WebAuthnCredential.id).filter_by(account_id=account_id).limit(1)) is not None


def _descriptors(credentials: list[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(
        id=c.credential_id, transports=[AuthenticatorTransport(t) for t in c.transports or [] if t in _TRANSPORTS],
    ) for c in credentials]


# --- challenges: single use, short-lived, bound to the browser ---------------------------------

def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _issue_challenge(purpose: str, account_id: int | None, **extra: str) -> bytes:
    now = utcnow()
    db.session.execute(db.delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at <= now))
    challenge = secrets.token_bytes(32)
    db.session.add(WebAuthnChallenge(challenge_hash=_digest(challenge), purpose=purpose, account_id=account_id,
                                     expires_at=now + timedelta(seconds=CHALLENGE_TTL)))
    db.session.commit()
    pending = dict(session.get(SESSION_KEY) or {})
    pending[purpose] = {"challenge": bytes_to_base64url(challenge), **extra}
    session[SESSION_KEY] = pending
    return challenge


def _take_challenge(purpose: str, account_id: int | None) -> dict:
    """The browser's pending ceremony of ``purpose``, its challenge deleted (committed) so that it
    is never accepted again; AuthenticationFailed when there is none, or it expired or was used."""
    pending = dict(session.get(SESSION_KEY) or {})
    entry = pending.pop(purpose, None)
    session[SESSION_KEY] = pending
    if not isinstance(entry, dict) or not entry.get("challenge"):
        raise AuthenticationFailed(START_AGAIN)
    challenge = base64url_to_bytes(entry["challenge"])
    deleted = db.session.execute(db.delete(WebAuthnChallenge).where(
        WebAuthnChallenge.challenge_hash == _digest(challenge), WebAuthnChallenge.purpose == purpose,
        WebAuthnChallenge.account_id == account_id, WebAuthnChallenge.expires_at > utcnow(),
    )).rowcount
    db.session.commit()
    if deleted != 1:
        raise AuthenticationFailed(START_AGAIN)
    return {**entry, "challenge": challenge}


def _json_object(credential_json: str) -> dict:
    try:
        value = json.loads(credential_json or "")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidInput("the browser's answer is not a WebAuthn credential")
    return value


# --- registration ---------------------------------------------------------------------------------

def registration_options(account: Account, label: str) -> dict:
    """The options of navigator.credentials.create() (JSON) for a new credential of ``account``."""
    existing = credentials_of(account.id)
    if len(existing) >= MAX_PER_ACCOUNT:
        raise Conflict(f"you have {len(existing)} passkeys and security keys: remove one first")
    handle = existing[0].user_handle if existing else secrets.token_bytes(32)
    rp_id, _ = relying_party()
    challenge = _issue_challenge("register", account.id, user=bytes_to_base64url(handle))
    options = generate_registration_options(
        rp_id=rp_id, rp_name=current_app.config["TESSERA_WEBAUTHN_RP_NAME"], user_id=handle,
        user_name=label, user_display_name=account.name or label, challenge=challenge,
        timeout=CHALLENGE_TTL * 1000, attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=_descriptors(existing),
    )
    payload = json.loads(options_to_json(options))
    payload["extensions"] = {"credProps": True}  # WebAuthn L2 10.4: whether it is discoverable
    return payload


def _clean_name(name: str | None, default: str) -> str:
    text = " ".join("".join(c for c in (name or "") if c.isprintable()).split())
    return text[:NAME_MAX] or default


def _resident_key(extensions) -> bool | None:
    """The credProps extension's ``rk`` (WebAuthn L2 10.4): whether the credential is discoverable;
    None when the browser did not say."""
    props = extensions.get("credProps") if isinstance(extensions, dict) else None
    resident = props.get("rk") if isinstance(props, dict) else None
    return resident if isinstance(resident, bool) else None


def register(account_id: int, credential_json: str, name: str | None) -> WebAuthnCredential:
    """Check the browser's answer to ``registration_options`` and keep the new credential
    (audited ``mfa.passkey_added``). InvalidInput when the answer does not verify (another
    origin, another RP ID, another challenge), Conflict when it is registered already."""
    pending = _take_challenge("register", account_id)
    data = _json_object(credential_json)
    rp_id, origin = relying_party()
    try:
        credential = parse_registration_credential_json(data)
        verified = verify_registration_response(
            credential=credential, expected_challenge=pending["challenge"], expected_rp_id=rp_id,
            expected_origin=origin, require_user_verification=False,
        )
    except Exception as exc:  # untrusted CBOR, certificates and keys in a library's parsers: a refusal, never a 500
        log.info("passkey registration refused for account %s: %s: %s", account_id, type(exc).__name__, exc)
        raise InvalidInput("this passkey or security key could not be registered here: try again") from None
    if len(credentials_of(account_id)) >= MAX_PER_ACCOUNT:
        raise Conflict("you have too many passkeys and security keys: remove one first")
    attachment = credential.authenticator_attachment.value if credential.authenticator_attachment else None
    backup_eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    discoverable = _resident_key(data.get("clientExtensionResults"))
    kind = method_of(attachment, backup_eligible)
    row = WebAuthnCredential(
        account_id=account_id, credential_id=verified.credential_id, public_key=verified.credential_public_key,
        sign_count=verified.sign_count, user_handle=base64url_to_bytes(pending["user"]),
        name=_clean_name(name, "Security key" if kind == "hwk" else "Passkey"),
        transports=[t.value for t in credential.response.transports or []] or None,
        aaguid=verified.aaguid, attachment=attachment, backup_eligible=backup_eligible,
        backed_up=verified.credential_backed_up, discoverable=discoverable, user_verified=verified.user_verified,
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("this passkey or security key is registered already") from None
    audit.record("mfa.passkey_added", account_id=account_id, actor="self", passkey=row.id, name=row.name,
                 method=kind, user_verified=row.user_verified, discoverable=discoverable, aaguid=row.aaguid)
    db.session.commit()
    return row


def own_credential(account_id: int, credential_pk: int) -> WebAuthnCredential:
    row = db.session.get(WebAuthnCredential, credential_pk)
    if row is None or row.account_id != account_id:
        raise NotFound("no such passkey")
    return row


def rename(account_id: int, credential_pk: int, name: str | None) -> WebAuthnCredential:
    row = own_credential(account_id, credential_pk)
    old, row.name = row.name, _clean_name(name, row.name)
    audit.record("mfa.passkey_renamed", account_id=account_id, actor="self", passkey=row.id, name=row.name, old=old)
    db.session.commit()
    return row


def remove_for_reset(account_id: int, actor: str) -> int:  # noqa: ARG001 (audited by the reset)
    """An operator's reset (``app.mfa.operators``): every passkey of the account goes, in the
    caller's transaction."""
    return db.session.execute(db.delete(WebAuthnCredential).where(WebAuthnCredential.account_id == account_id)).rowcount


def remove(account_id: int, credential_pk: int, actor: str = "self") -> None:
    row = own_credential(account_id, credential_pk)
    db.session.delete(row)
    audit.record("mfa.passkey_removed", account_id=account_id, actor=actor, passkey=credential_pk, name=row.name)
    db.session.commit()


# --- assertions: a second factor, a passwordless login -------------------------------------------

def authentication_options(account_id: int | None, *, require_user_verification: bool) -> dict:
    """The options of navigator.credentials.get() (JSON): for a second factor, the account's
    credentials (``allowCredentials``); for a passwordless login (``account_id`` None), none: the
    browser offers the discoverable credentials it holds for this RP ID."""
    allowed: list[WebAuthnCredential] = []
    if account_id is not None:
        allowed = credentials_of(account_id)
        if not allowed:
            raise InvalidInput("this account has no passkey or security key")
    rp_id, _ = relying_party()
    challenge = _issue_challenge("login" if account_id is None else "second_factor", account_id)
    options = generate_authentication_options(
        rp_id=rp_id, challenge=challenge, timeout=CHALLENGE_TTL * 1000, allow_credentials=_descriptors(allowed),
        user_verification=(UserVerificationRequirement.REQUIRED if require_user_verification
                           else UserVerificationRequirement.PREFERRED),
    )
    return json.loads(options_to_json(options))


def _parsed_assertion(credential_json: str) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(_json_object(credential_json))
    except (WebAuthnException, ValueError):
        raise InvalidInput("the browser's answer is not a WebAuthn assertion") from None


def _fail(account_id: int | None, kind: str, reason: str, detail: str = DID_NOT_WORK) -> NoReturn:
    """Audit a refused assertion (``kind``: ``mfa.failure`` or ``login.failure``) and refuse it."""
    log.info("passkey assertion refused (account %s): %s", account_id, reason)
    audit.record(kind, account_id=account_id, actor="self", method="webauthn", reason=reason)
    db.session.commit()
    raise AuthenticationFailed(detail)


def _check_assertion(credential: AuthenticationCredential, challenge: bytes, row: WebAuthnCredential | None,
                     require_user_verification: bool, failure: str, owner: int | None) -> Assertion:
    """Verify an assertion of ``row`` (WebAuthn L2 7.2) and record its use; the caller commits.
    ``owner``: the account the ceremony is for, when known (on which a failure is audited)."""
    if row is None:
        _fail(owner, failure, "unknown credential")
    rp_id, origin = relying_party()
    try:
        # The counter is checked below, after the signature, with its own audit event: the
        # library's check is switched off by passing 0.
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=row.public_key, credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as exc:  # untrusted input in a library's parsers: a refusal, never a 500
        _fail(row.account_id, failure, f"{type(exc).__name__}: {exc}"[:200])
    # L2 7.2 step 6: the user handle, when returned, is the one of the credential's owner.
    handle = credential.response.user_handle
    if handle is not None and handle != row.user_handle:
        _fail(row.account_id, failure, "user handle of another account")
    # L2 7.2 step 21: a counter that did not grow (either non-zero) signals a cloned authenticator.
    new_count = verified.new_sign_count
    if (new_count or row.sign_count) and new_count <= row.sign_count:
        audit.record("mfa.passkey_counter_regressed", account_id=row.account_id, actor="system", passkey=row.id,
                     stored=row.sign_count, received=new_count)
        _fail(row.account_id, failure, "signature counter did not grow",
              "this passkey's signature counter went backwards (it may have been copied): use another way")
    row.sign_count, row.last_used_at = new_count, utcnow()
    row.backed_up = verified.credential_backed_up
    row.backup_eligible = row.backup_eligible or verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    attachment = credential.authenticator_attachment.value if credential.authenticator_attachment else row.attachment
    methods = [method_of(attachment, row.backup_eligible)]
    if verified.user_verified:
        methods.append("user")
    return Assertion(row.account_id, row, methods)


def _credential_row(raw_id: bytes, account_id: int | None = None) -> WebAuthnCredential | None:
    query = db.select(WebAuthnCredential).filter_by(credential_id=raw_id)
    if account_id is not None:
        query = query.filter_by(account_id=account_id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.scalar(query)


def verify(account_id: int, credential_json: str, *, require_user_verification: bool = False) -> list[str]:
    """A second factor (a login's or a step-up's): the methods it adds (``hwk``/``swk``, and
    ``user`` when the person was verified). AuthenticationFailed unless it is a valid assertion of
    one of the account's credentials for this browser's pending challenge."""
    credential = _parsed_assertion(credential_json)
    with credential_check("webauthn", account_id=account_id):
        pending = _take_challenge("second_factor", account_id)
        row = _credential_row(credential.raw_id, account_id)
        assertion = _check_assertion(credential, pending["challenge"], row, require_user_verification, "mfa.failure",
                                     account_id)
        db.session.commit()
    return assertion.methods


def login(credential_json: str, client_id: int | None = None) -> tuple[Account, list[str]]:
    """A passwordless login with a discoverable credential, the person verified: (the account, its
    methods). AuthenticationFailed unless valid for this browser's pending challenge and the
    account is active; the login is recorded (``mark_login``) and audited like a password's."""
    credential = _parsed_assertion(credential_json)
    row = _credential_row(credential.raw_id)
    account_id = row.account_id if row is not None else None
    with credential_check("webauthn", account_id=account_id):
        pending = _take_challenge("login", None)
        assertion = _check_assertion(credential, pending["challenge"], row, True, "login.failure", account_id)
        account = db.session.get(Account, assertion.account_id)
        try:
            mark_login(account, None, client_id)
        except AccountInactive:
            _fail(assertion.account_id, "login.failure", "inactive account", "this account is not active")
        audit.record("login.success", account_id=account.id, actor="self", client_id=client_id, method="webauthn",
                     amr=assertion.methods, passkey=assertion.credential.id)
        db.session.commit()
    return account, assertion.methods
