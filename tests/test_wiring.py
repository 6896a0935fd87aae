"""After create_app, every signal has its receivers and every registry its entries: each domain's
init_app ran (app/factory.py). docs/architecture.md lists the same wiring."""

from __future__ import annotations

from app import signals
from app.accounts.locking import _write_guards
from app.admin.principals import describe_actor
from app.bulk_import.lazy import LegacyVerification
from app.bulk_import.links import confirm_on_login
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.errors import NeedsMerge
from app.merging.requests import ensure_not_locked
from app.merging.routes import offer_merge
from app.oidc.logout import end_sessions_of
from app.oidc.models import AuthorizationCode, Consent, SubjectMapping, Token
from app.partners.changes import note_claims_changed
from app.partners.models import AccountAddress
from app.partners.token_exchange import TokenExchangeGrant
from app.registries import registries

#: signal → the receivers the domains connect (docs/architecture.md, "Signals").
RECEIVERS = {
    signals.account_logged_in: {confirm_on_login},
    signals.claims_changed: {note_claims_changed},
    signals.account_closed: {end_sessions_of},
    signals.account_locked: {end_sessions_of},
}


def test_every_signal_has_its_receivers(app):  # noqa: ARG001  (the app fixture ran create_app)
    declared = {s for s in vars(signals).values() if isinstance(s, type(signals.claims_changed))}
    assert declared == set(RECEIVERS), "a signal without an entry here (and in docs/architecture.md)"
    for signal, expected in RECEIVERS.items():
        connected = {r for r in signal.receivers_for(object())}
        assert expected <= connected, signal.name


def test_every_registry_has_its_entries(app):
    found = registries(app)
    assert [type(f) for f in found.login_fallbacks] == [LegacyVerification]
    assert set(found.business_data) == {SubjectMapping, Token, Consent, AuthorizationCode, LegacyMapping,
                                        AccountAttributes, AccountAddress}
    assert [j.name for j in found.periodic_jobs] == [
        "end-expired-sessions", "release-expired-deregistrations", "resume-due-merges", "housekeeping"]
    assert found.actor_descriptions == [describe_actor]
    server = app.extensions["tessera_authorization_server"]
    assert server.grant_types[-1] == TokenExchangeGrant.GRANT_TYPE
    assert ensure_not_locked in _write_guards
    assert app.error_handler_spec[None][None][NeedsMerge] is offer_merge


def test_discovery_lists_the_registered_grants(app, http):
    grants = http.get("/.well-known/openid-configuration").get_json()["grant_types_supported"]
    assert grants == app.extensions["tessera_authorization_server"].grant_types
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in grants
