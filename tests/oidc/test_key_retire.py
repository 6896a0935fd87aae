"""`tessera keys retire` through the app's own command line, and what /jwks and the logout endpoint
then answer: a next key leaves at once (a new next key takes its place), a retired key once no
token signed with it can still be valid (or at once with --now), the current key never."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from joserfc import jws

from app.accounts.models import AuditEvent
from app.events.outbox import enqueue
from app.extensions import db
from app.oidc.clients import load_client_row
from app.oidc.keys import rotate_keys, security_event_token
from app.oidc.logout import issue_logout_token
from app.oidc.models import SigningKey
from app.security import utcnow
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def _cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def _json(app, *args: str):
    result = _cli(app, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def _retire(app, kid: str, *options: str):
    """``tessera keys retire [OPTIONS] -- KID``: a kid (a base64url thumbprint) may start with "-"."""
    return _cli(app, "keys", "retire", *options, "--", kid)


def _retired(app, kid: str, *options: str) -> dict:
    result = _retire(app, kid, "--json", *options)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def _retire_refused(app, kid: str) -> str:
    result = _retire(app, kid)
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    return result.output


def _kid(app, state: str, alg: str = "RS256") -> str:
    (key,) = [k for k in _json(app, "keys", "list") if k["state"] == state and k["alg"] == alg and k["published"]]
    return key["kid"]


def _published(http) -> set[str]:
    return {k["kid"] for k in http.get("/jwks").get_json()["keys"]}


def _rotate(app) -> str:
    """Rotate; return the RS256 key just retired."""
    before = _kid(app, "current")
    with app.app_context():
        rotate_keys()
    return before


def _id_token(http, browser, factories) -> tuple[str, RelyingParty]:
    client = factories.client()
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, factories.account())
    return rp.exchange(code_from(response, request), request).get_json()["id_token"], rp


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_the_current_key_is_never_retired(app, http):
    current = _kid(app, "current")
    assert f"key {current} is the current RS256 signing key: rotate first" in _retire_refused(app, current)
    assert "no signing key 'nope'" in _retire_refused(app, "nope")
    assert current in _published(http)


def test_a_next_key_leaves_the_jwks_at_once_and_a_new_next_key_takes_its_place(app, http):
    old_next = _kid(app, "next", "ES256")
    assert old_next in _published(http)
    retired = _retired(app, old_next)
    assert (retired["state"], retired["published"]) == ("retired", False)
    new_next = _kid(app, "next", "ES256")
    assert new_next != old_next
    assert old_next not in _published(http) and new_next in _published(http)
    with app.app_context():
        (event,) = db.session.scalars(db.select(AuditEvent).filter_by(kind="key.retired"))
        assert (event.actor, event.details["kid"], event.details["state"]) == ("operator:cli", old_next, "next")
    assert "left the JWKS at" in _retire_refused(app, old_next)


def test_a_retired_key_stays_until_its_tokens_expired(app, http, browser, factories):
    id_token, rp = _id_token(http, browser, factories)
    old = _rotate(app)
    assert jws.extract_compact(id_token.encode()).protected["kid"] == old
    retired = _retired(app, old)
    config = app.config
    with app.app_context():
        row = db.session.scalar(db.select(SigningKey).filter_by(kid=old))
        expected = row.retired_at + timedelta(seconds=config["TESSERA_KEY_CACHE_TTL"] + config["TESSERA_ID_TOKEN_TTL"])
    assert retired["published"] is True and _time(retired["published_until"]) == expected
    assert old in _published(http)
    rp.validate_id_token(id_token)  # still verifiable: it may still be valid

    with app.app_context():  # that time came (without sleeping)
        db.session.scalar(db.select(SigningKey).filter_by(kid=old)).published_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert old not in _published(http)
    assert next(k for k in _json(app, "keys", "list") if k["kid"] == old)["published"] is False


def test_now_takes_a_retired_key_out_at_once_and_its_id_token_hints_are_refused(app, http, browser, factories):
    id_token, _ = _id_token(http, browser, factories)
    old = _rotate(app)
    assert http.get("/logout", query_string={"id_token_hint": id_token}).status_code != 400
    out = _retire(app, old, "--now").output
    assert out.startswith(f"{old}: retired; out of the JWKS since")
    assert old not in _published(http)
    refused = http.get("/logout", query_string={"id_token_hint": id_token})
    assert refused.status_code == 400 and "id_token_hint" in refused.get_data(as_text=True)


def test_queued_messages_signed_with_the_key_hold_it(app, http, factories, monkeypatch):
    client = factories.client(events_endpoint="https://rp.example.com/events",
                              backchannel_logout_uri="https://rp.example.com/logout")
    account = factories.account()
    with app.app_context():
        row = load_client_row(client.client_id)
        token, jti = issue_logout_token(row, account.id, "sid-1")
        logout_expiry = utcnow() + timedelta(seconds=120)
        enqueue(kind="backchannel_logout", client_id=row.id, url=row.backchannel_logout_uri,
                body=f"logout_token={token}", content_type="application/x-www-form-urlencoded", jti=jti,
                expires_at=logout_expiry)
        db.session.commit()
    # A logout token is valid until its exp: with short ID tokens, it is what holds the key longest.
    monkeypatch.setitem(app.config, "TESSERA_ID_TOKEN_TTL", 10)
    old = _rotate(app)
    assert _time(_retired(app, old)["published_until"]) == logout_expiry

    with app.app_context():
        row = load_client_row(client.client_id)
        token, jti = security_event_token(row, "test", {"urn:example:event": {}})
        enqueue(kind="set", client_id=row.id, url=row.events_endpoint, body=token,
                content_type="application/secevent+jwt", jti=jti)
        db.session.commit()
    other = _rotate(app)
    assert "1 queued message(s) signed with key" in _retire_refused(app, other)
    assert other in _published(http)
    assert _retired(app, other, "--now")["published"] is False
    assert other not in _published(http)
