"""Every route has an actor (docs/security.md, "Routes and who may call them"), and every route that
is not for the anonymous refuses the anonymous and the wrong kind of caller, through HTTP.

The table here is the one in docs/security.md: a route added without saying who may call it fails
``test_every_route_has_an_actor_in_the_threat_model``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ISSUER
from tests.rp import RelyingParty

SECURITY_MD = Path(__file__).resolve().parent.parent / "docs" / "security.md"

#: endpoint → who may call it (the actors of docs/security.md).
ACTORS = {
    # the anonymous: protocol metadata and the start of every interaction
    "oidc.discovery": "anonymous", "oidc.jwks": "anonymous", "oidc.authorize": "anonymous",
    "oidc.resume": "anonymous", "oidc.chain_step": "anonymous", "oidc.initiate_login": "anonymous",
    "oidc.end_session": "anonymous", "oidc.check_session_iframe": "anonymous",
    "accounts.login": "anonymous", "accounts.otp_phone": "anonymous", "accounts.otp_code": "anonymous",
    "accounts.otp_signup": "anonymous", "accounts.otp_dormant": "anonymous", "accounts.otp_fresh": "anonymous",
    "accounts.consent": "anonymous", "accounts.confirm_logout": "anonymous", "accounts.verify_email": "anonymous",
    "account.login": "anonymous", "recovery.forgot": "anonymous", "recovery.code": "anonymous",
    "recovery.reset": "anonymous", "federation.start": "anonymous", "federation.callback": "anonymous",
    "federation.pending": "anonymous", "federation.create_account": "anonymous",
    "federation.link_with_password": "anonymous", "federation.send_link_code": "anonymous",
    "federation.link_with_code": "anonymous",
    "mfa.challenge": "anonymous", "mfa.account_login": "anonymous",
    "passkeys.second_factor_options": "anonymous", "passkeys.account_second_factor_options": "anonymous",
    "passkeys.login_options": "anonymous", "passkeys.login": "anonymous",
    "passkeys.account_login_options": "anonymous", "passkeys.account_login": "anonymous",
    "partners.openapi": "anonymous", "partners.unknown": "anonymous", "sync.openapi": "anonymous",
    "web.index": "anonymous", "web.healthz": "anonymous", "web.readyz": "anonymous", "static": "anonymous",
    # a person, logged in to the hub (the session cookie)
    "account.index": "person", "account.profile": "person", "account.confirm": "person",
    "account.send_phone_code": "person", "account.confirm_phone": "person", "account.add_email": "person",
    "account.unbind": "person", "account.revoke_session": "person", "account.revoke_client": "person",
    "account.deregister": "person", "account.password": "person", "merging.start": "person", "merging.code": "person",
    "merging.preview": "person",
    "mfa.security": "person", "mfa.totp_setup": "person", "mfa.totp_remove": "person", "mfa.recovery_codes": "person", "mfa.sms_toggle": "person", "mfa.forget_browsers": "person",
    "passkeys.register": "person", "passkeys.register_options": "person", "passkeys.rename": "person",
    "passkeys.remove": "person",
    # a relying party (client authentication, or a user's access token it holds)
    "oidc.token": "relying party", "oidc.revoke": "relying party", "oidc.introspect": "relying party",
    "oidc.userinfo": "relying party",
    # a partner (client-credentials token with partner scopes and a data contract)
    "partners.read_user": "partner", "partners.patch_user": "partner", "partners.register_user": "partner",
    "partners.batch_read": "partner", "partners.lookup_user": "partner", "partners.list_addresses": "partner",
    "partners.add_address": "partner", "partners.replace_address": "partner", "partners.delete_address": "partner",
    "partners.list_changes": "partner", "partners.subject_status": "partner",
    # a tenant's legacy system (client-credentials token of its tenant with sync:write)
    "sync.put_account": "legacy system", "sync.get_account": "legacy system", "sync.delete_account": "legacy system",
    # the operators' monitoring
    "web.metrics": "operator",
    "admin_api.openapi": "anonymous",
}

#: The admin API (/api/admin/v1): an admin token (an admin scope, or a person holding an admin role).
ADMIN_PROBES = {
    "tenants_list": ("GET", "/tenants", None), "tenants_create": ("POST", "/tenants", {"slug": "x", "name": "X"}),
    "tenants_show": ("GET", "/tenants/TENANT", None), "tenants_update": ("PATCH", "/tenants/TENANT", {"name": "X"}),
    "clients_list": ("GET", "/clients", None), "clients_create": ("POST", "/clients", {"tenant": "x"}),
    "clients_show": ("GET", "/clients/c1", None), "clients_update": ("PATCH", "/clients/c1", {"client_name": "X"}),
    "clients_disable": ("POST", "/clients/c1/disable", None), "clients_enable": ("POST", "/clients/c1/enable", None),
    "clients_rotate_secret": ("POST", "/clients/c1/rotate-secret", None),
    "clients_delete": ("DELETE", "/clients/c1", None), "clients_contract": ("GET", "/clients/c1/contract", None),
    "clients_set_contract": ("PUT", "/clients/c1/contract", {"read": []}),
    "merges_list": ("GET", "/merges", None), "merges_create": ("POST", "/merges", {"survivor": 1, "absorbed": 2}),
    "merges_preview": ("POST", "/merges/preview", {"survivor": 1, "absorbed": 2}), "merges_show": ("GET", "/merges/1", None),
    "deliveries_list": ("GET", "/deliveries", None), "deliveries_retry": ("POST", "/deliveries/1/retry", None),
    "keys_list": ("GET", "/keys", None), "keys_rotate": ("POST", "/keys/rotate", None),
    "upstreams_list": ("GET", "/upstreams", None), "me": ("GET", "/me", None),
    "users_search": ("GET", "/users?phone=%2B14155550199", None), "users_show": ("GET", "/users/1", None),
    "users_lock": ("POST", "/users/1/lock", {"reason": "x"}), "users_unlock": ("POST", "/users/1/unlock", None),
    "users_sessions": ("GET", "/users/1/sessions", None),
    "users_reset_password": ("POST", "/users/1/reset-password", {"generate": True}),
    "users_revoke": ("POST", "/users/1/revoke", {}), "users_reset_mfa": ("POST", "/users/1/reset-mfa", None), "users_close": ("POST", "/users/1/close", {"reason": "x"}),
    "users_export": ("GET", "/users/1/export", None), "users_end_sessions": ("DELETE", "/users/1/sessions", None),
    "sessions_end": ("DELETE", "/sessions/abc", None), "sessions_list": ("GET", "/sessions", None), "audit_search": ("GET", "/audit", None),
    "audit_export": ("GET", "/audit/export", None), "tenants_delete": ("DELETE", "/tenants/TENANT", None),
    "merges_retry": ("POST", "/merges/1/retry", None), "merges_cancel": ("POST", "/merges/1/cancel", {"reason": "x"}),
    "keys_retire": ("POST", "/keys/abc/retire", {"now": True}),
    "upstreams_create": ("POST", "/upstreams", {"slug": "x", "name": "X", "client_id": "c"}),
    "upstreams_show": ("GET", "/upstreams/x", None), "upstreams_update": ("PATCH", "/upstreams/x", {"name": "Y"}),
    "upstreams_disable": ("POST", "/upstreams/x/disable", None), "upstreams_enable": ("POST", "/upstreams/x/enable", None),
    "imports_list": ("GET", "/imports", None), "imports_show": ("GET", "/imports/1", None),
    "imports_conflicts": ("GET", "/imports/1/conflicts", None),
}
ACTORS.update({f"admin_api.{name}": "admin" for name in ADMIN_PROBES})

#: The admin console (/admin): a person holding an admin role, logged in to the console (its
#: session cookie); the anonymous are sent to /admin/login (GET) or refused for want of CSRF (POST).
CONSOLE_PROBES = {
    "home": ("GET", "/", None), "people": ("GET", "/people?by=phone&q=4155550199", None),
    "person": ("GET", "/people/1", None), "person_lock": ("POST", "/people/1/lock", {"reason": "x"}),
    "person_unlock": ("POST", "/people/1/unlock", {}), "person_logout": ("POST", "/people/1/logout", {}),
    "tenants": ("GET", "/tenants", None), "clients": ("GET", "/clients", None), "client": ("GET", "/clients/c1", None),
    "client_disable": ("POST", "/clients/c1/disable", {}), "client_enable": ("POST", "/clients/c1/enable", {}),
    "client_rotate_secret": ("POST", "/clients/c1/rotate-secret", {}),
    "deliveries_list": ("GET", "/deliveries", None), "delivery_retry": ("POST", "/deliveries/1/retry", {}),
    "keys": ("GET", "/keys", None), "keys_rotate": ("POST", "/keys/rotate", {}),
    "audit_log": ("GET", "/audit", None), "logout": ("POST", "/logout", {}),
    "merges": ("GET", "/merges", None), "merge": ("GET", "/merges/1", None),
    "merge_retry": ("POST", "/merges/1/retry", {}), "merge_cancel": ("POST", "/merges/1/cancel", {"reason": "x"}),
    "imports": ("GET", "/imports", None), "import_job": ("GET", "/imports/1", None),
    "import_conflicts": ("GET", "/imports/1/conflicts", None), "upstreams": ("GET", "/upstreams", None),
    "upstream_disable": ("POST", "/upstreams/x/disable", {}), "upstream_enable": ("POST", "/upstreams/x/enable", {}),
}
ACTORS.update({f"admin_console.{name}": "admin console" for name in CONSOLE_PROBES})
# the console's login starts (and its callback ends) the hub's code flow: anyone may
ACTORS.update({"admin_console.login": "anonymous", "admin_console.callback": "anonymous"})

#: A concrete request for each route that is not the anonymous': (method, path, body).
PROBES = {
    "account.index": ("GET", "/account/", None),
    "account.profile": ("POST", "/account/profile", {"name": "Mallory"}),
    "account.confirm": ("POST", "/account/confirm", {"password": "x"}),
    "account.send_phone_code": ("POST", "/account/phone/bind", {"phone": "+14155550199"}),
    "account.confirm_phone": ("POST", "/account/phone/bind/abc", {"code": "000000"}),
    "account.add_email": ("POST", "/account/email", {"email": "m@example.com"}),
    "account.unbind": ("POST", "/account/identities/1/unbind", {}),
    "account.revoke_session": ("POST", "/account/sessions/1/revoke", {}),
    "account.revoke_client": ("POST", "/account/clients/1/revoke", {}),
    "account.deregister": ("POST", "/account/deregister", {}),
    "account.password": ("POST", "/account/password", {"password": "a new passphrase", "confirm": "a new passphrase"}),
    "merging.start": ("POST", "/account/merge/", {"login": "+14155550123", "password": "x"}),
    "merging.code": ("POST", "/account/merge/code", {"code": "000000"}),
    "merging.preview": ("POST", "/account/merge/preview", {}),
    "mfa.security": ("GET", "/account/security", None),
    "mfa.totp_setup": ("POST", "/account/security/totp", {"code": "123456", "verify": "Verify"}),
    "mfa.totp_remove": ("POST", "/account/security/totp/remove", {}),
    "mfa.recovery_codes": ("POST", "/account/security/recovery-codes", {}),
    "mfa.sms_toggle": ("POST", "/account/security/sms", {"on": "1"}),
    "mfa.forget_browsers": ("POST", "/account/security/browsers/forget", {}),
    "passkeys.register": ("POST", "/account/security/passkeys/new", {"name": "x", "credential": "{}"}),
    "passkeys.register_options": ("POST", "/account/security/passkeys/options", {}),
    "passkeys.rename": ("POST", "/account/security/passkeys/1/rename", {"name": "x"}),
    "passkeys.remove": ("POST", "/account/security/passkeys/1/remove", {}),
    "oidc.token": ("POST", "/token", {"grant_type": "client_credentials"}),
    "oidc.revoke": ("POST", "/revoke", {"token": "x"}),
    "oidc.introspect": ("POST", "/introspect", {"token": "x"}),
    "oidc.userinfo": ("GET", "/userinfo", None),
    "partners.read_user": ("GET", "/api/users/some-sub", None),
    "partners.patch_user": ("PATCH", "/api/users/some-sub", {"nickname": "x"}),
    "partners.register_user": ("POST", "/api/users", {"phone_number": "+14155550199"}),
    "partners.batch_read": ("POST", "/api/users:batch-read", {"subs": ["a"]}),
    "partners.lookup_user": ("POST", "/api/users:lookup", {"phone_number": "+14155550199"}),
    "partners.list_addresses": ("GET", "/api/users/some-sub/addresses", None),
    "partners.add_address": ("POST", "/api/users/some-sub/addresses", {"street_address": "x"}),
    "partners.replace_address": ("PUT", "/api/users/some-sub/addresses/1", {"street_address": "x"}),
    "partners.delete_address": ("DELETE", "/api/users/some-sub/addresses/1", None),
    "partners.list_changes": ("GET", "/api/changes", None),
    "partners.subject_status": ("GET", "/api/subjects/some-sub", None),
    "sync.put_account": ("PUT", "/api/sync/TENANT/accounts/L1", {"phone": "+14155550199", "version": 1}),
    "sync.get_account": ("GET", "/api/sync/TENANT/accounts/L1", None),
    "sync.delete_account": ("DELETE", "/api/sync/TENANT/accounts/L1", None),
    "web.metrics": ("GET", "/metrics", None),
    **{f"admin_api.{name}": (method, "/api/admin/v1" + path, body) for name, (method, path, body) in ADMIN_PROBES.items()},
    **{f"admin_console.{name}": (method, "/admin" + path, body) for name, (method, path, body) in CONSOLE_PROBES.items()},
}

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def _call(http, method, path, body, headers=None):
    kwargs = {"headers": headers or {}, "environ_base": REMOTE}
    if body is not None:
        if path.startswith("/api/"):
            kwargs["json"] = body
        else:
            kwargs["data"] = body
    return http.open(path, method=method, **kwargs)


def _refused(response) -> bool:
    """Not served: a refusal (401, 403, 404), a malformed-request answer (400, a missing CSRF token),
    or a login page (the hub's, or the admin console's /admin/login)."""
    if response.status_code in (301, 302, 303):
        return "/login" in response.headers.get("Location", "")
    return response.status_code in (400, 401, 403, 404)


def test_every_route_has_an_actor_in_the_threat_model(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - set(ACTORS) == set(), "say who may call these routes (here and in docs/security.md)"
    assert set(ACTORS) - endpoints == set(), "routes that no longer exist"
    assert set(PROBES) == {e for e, actor in ACTORS.items() if actor != "anonymous"}
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", SECURITY_MD.read_text(encoding="utf-8")))
    assert {e for e in ACTORS if e != "static"} - documented == set(), "docs/security.md lacks these routes"


@pytest.mark.parametrize("endpoint", sorted(PROBES))
def test_the_anonymous_are_refused(http, factories, endpoint):
    tenant = factories.tenant()
    method, path, body = PROBES[endpoint]
    response = _call(http, method, path.replace("TENANT", tenant), body)
    assert _refused(response), (endpoint, response.status_code, response.get_data(as_text=True)[:300])


def _client_token(http, client, scope):
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    response = rp.token_request({"grant_type": "client_credentials", "scope": scope})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


@pytest.fixture
def wrong_callers(app, http, factories):
    """Tokens of the wrong actors: a relying party's client-credentials token without API scopes,
    a partner's token, and a legacy system's token of another tenant."""
    tenant = factories.tenant()
    plain = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    partner = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[],
                               scope="partner:read partner:write partner:lookup partner:register")
    other_tenant = factories.tenant()
    legacy = factories.client(tenant=other_tenant, grant_types=["client_credentials"], redirect_uris=[],
                              scope="sync:write")
    return {
        "tenant": tenant,
        "relying party": _client_token(http, plain, "openid"),
        "partner": _client_token(http, partner, "partner:read partner:write partner:lookup partner:register"),
        "legacy system of another tenant": _client_token(http, legacy, "sync:write"),
    }


@pytest.mark.parametrize("endpoint", sorted(e for e, a in ACTORS.items() if a in ("partner", "legacy system", "admin")))
def test_bearer_apis_refuse_the_wrong_actor(http, wrong_callers, endpoint):
    method, path, body = PROBES[endpoint]
    path = path.replace("TENANT", wrong_callers["tenant"])
    for who in ("relying party", "partner", "legacy system of another tenant"):
        if ACTORS[endpoint] == "partner" and who == "partner":
            continue  # the right actor (it still reaches only related people: tests/partners)
        response = _call(http, method, path, body, {"Authorization": f"Bearer {wrong_callers[who]}"})
        assert response.status_code in (401, 403, 404), (endpoint, who, response.status_code, response.get_json())
        assert response.mimetype == "application/problem+json", (endpoint, who)


def test_userinfo_refuses_a_token_with_no_person(http, wrong_callers):
    """A client-credentials token names no person: UserInfo is for a user's access token."""
    response = http.get("/userinfo", headers={"Authorization": f"Bearer {wrong_callers['partner']}"})
    assert response.status_code in (401, 403)
