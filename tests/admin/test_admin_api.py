"""The admin API through HTTP: who may call it (tokens, roles, reach), and each resource's
answers, refusals and audit trail."""

from __future__ import annotations

from app.extensions import db

BASE = "/api/admin/v1"


def test_no_token_bad_token_and_non_admin_tokens_are_refused(http, admins, factories):
    assert http.get(f"{BASE}/me").status_code == 401
    bad = http.get(f"{BASE}/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.get_json()["reason"] == "token_invalid"
    assert bad.mimetype == "application/problem+json"
    # A client credentials token without an admin scope.
    plain = admins.client_token("super", scope="introspection")
    refused = http.get(f"{BASE}/me", headers=plain.headers)
    assert refused.status_code == 403 and refused.get_json()["reason"] == "insufficient_scope"
    # A person with the admin scope but no role.
    nobody = admins.person_token(None)
    refused = http.get(f"{BASE}/me", headers=nobody.headers)
    assert refused.status_code == 403 and refused.get_json()["reason"] == "not_an_admin"


def test_a_persons_admin_token_from_the_code_flow(http, admins, factories):
    tenant = factories.tenant()
    caller = admins.person_token("tenant_admin", tenant)
    me = http.get(f"{BASE}/me", headers=caller.headers).get_json()
    assert me["role"] == "tenant_admin" and me["actor"] == f"admin:{caller.account_id}"


def test_tenant_admin_sees_only_its_tenant_and_its_clients(http, admins, factories):
    mine, other = factories.tenant(), factories.tenant()
    my_client = factories.client(tenant=mine)
    their_client = factories.client(tenant=other)
    caller = admins.client_token("tenant_admin", mine)
    tenants = http.get(f"{BASE}/tenants", headers=caller.headers).get_json()["items"]
    assert [t["slug"] for t in tenants] == [mine]
    assert http.get(f"{BASE}/tenants/{other}", headers=caller.headers).status_code == 404
    ids = {c["client_id"] for c in http.get(f"{BASE}/clients?limit=200", headers=caller.headers).get_json()["items"]}
    assert my_client.client_id in ids and their_client.client_id not in ids
    for path in (f"/clients/{their_client.client_id}", f"/clients/{their_client.client_id}/contract"):
        assert http.get(BASE + path, headers=caller.headers).status_code == 404
    assert http.post(f"{BASE}/clients/{their_client.client_id}/disable", headers=caller.headers).status_code == 404
    assert http.post(f"{BASE}/clients/{their_client.client_id}/rotate-secret", headers=caller.headers).status_code == 404
    created = http.post(f"{BASE}/clients", headers=caller.headers,
                        json={"tenant": other, "client_name": "Sneaky", "redirect_uris": ["https://x.example/cb"]})
    assert created.status_code == 404
    escalated = http.post(f"{BASE}/clients", headers=caller.headers,
                          json={"tenant": mine, "client_name": "Bot", "grant_types": ["client_credentials"],
                                "scope": "admin:super"})
    assert escalated.status_code == 403
    assert http.post(f"{BASE}/tenants", headers=caller.headers, json={"slug": "new", "name": "New"}).status_code == 403
    assert http.get(f"{BASE}/keys", headers=caller.headers).status_code == 403


def test_tenant_admin_reaches_only_people_related_to_its_tenant(http, admins, factories, app):
    from tests.rp import Browser, RelyingParty, authorize, code_from
    from tests.conftest import ISSUER

    mine = factories.tenant()
    site = factories.client(tenant=mine, trusted=True)
    related, stranger = factories.account(), factories.account()
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(browser, rp, related)
    assert rp.exchange(code_from(response, request), request).status_code == 200

    caller = admins.client_token("tenant_admin", mine)
    assert http.get(f"{BASE}/users/{related.id}", headers=caller.headers).status_code == 200
    assert http.get(f"{BASE}/users/{stranger.id}", headers=caller.headers).status_code == 404
    found = http.get(f"{BASE}/users", query_string={"phone": stranger.phone}, headers=caller.headers).get_json()
    assert found["items"] == []
    found = http.get(f"{BASE}/users", query_string={"phone": related.phone}, headers=caller.headers).get_json()
    assert [u["id"] for u in found["items"]] == [related.id]
    assert http.post(f"{BASE}/users/{stranger.id}/lock", json={"reason": "x"}, headers=caller.headers).status_code == 404
    everyone = http.get(f"{BASE}/users?limit=200", headers=caller.headers).get_json()["items"]
    assert {u["id"] for u in everyone} == {related.id}


def test_support_finds_locks_unlocks_and_logs_out_but_never_touches_secrets_or_keys(http, admins, factories):
    person = factories.account()
    client = factories.client()
    support = admins.client_token("support")
    found = http.get(f"{BASE}/users", query_string={"phone": person.phone}, headers=support.headers).get_json()
    assert [u["id"] for u in found["items"]] == [person.id]
    locked = http.post(f"{BASE}/users/{person.id}/lock", json={"reason": "recycled number"}, headers=support.headers)
    assert locked.status_code == 200 and locked.get_json()["status"] == "locked"
    again = http.post(f"{BASE}/users/{person.id}/lock", json={"reason": "again"}, headers=support.headers)
    assert again.status_code == 409 and again.get_json()["reason"] == "conflict"
    assert http.post(f"{BASE}/users/{person.id}/unlock", headers=support.headers).get_json()["status"] == "active"
    assert http.delete(f"{BASE}/users/{person.id}/sessions", headers=support.headers).status_code == 200
    for method, path in (("post", f"/clients/{client.client_id}/rotate-secret"), ("get", f"/clients/{client.client_id}"),
                         ("get", "/keys"), ("post", "/keys/rotate"), ("get", "/audit"),
                         ("post", f"/clients/{client.client_id}/disable")):
        answer = getattr(http, method)(BASE + path, headers=support.headers)
        assert answer.status_code == 403, (path, answer.status_code)
        assert answer.get_json()["reason"] == "forbidden"
    history = http.get(f"{BASE}/users/{person.id}", headers=support.headers).get_json()["events"]
    assert {"account.locked", "account.unlocked", "account.logged_out"} <= {e["kind"] for e in history}
    assert all(e["actor"] == f"client:{support_client(http, support)}" for e in history
               if e["kind"] in ("account.locked", "account.unlocked"))


def support_client(http, caller) -> str:
    return http.get(f"{BASE}/me", headers=caller.headers).get_json()["actor"].split(":", 1)[1]


def test_auditor_reads_but_never_writes(http, admins, factories):
    person = factories.account()
    client = factories.client()
    auditor = admins.client_token("auditor")
    assert http.get(f"{BASE}/clients/{client.client_id}", headers=auditor.headers).status_code == 200
    assert http.get(f"{BASE}/users/{person.id}", headers=auditor.headers).status_code == 200
    assert http.get(f"{BASE}/audit", headers=auditor.headers).status_code == 200
    assert http.get(f"{BASE}/keys", headers=auditor.headers).status_code == 200
    for method, path, body in (("post", f"/users/{person.id}/lock", {"reason": "x"}),
                               ("delete", f"/users/{person.id}/sessions", None),
                               ("post", f"/clients/{client.client_id}/disable", None),
                               ("post", "/keys/rotate", None), ("post", "/tenants", {"slug": "t", "name": "T"})):
        assert getattr(http, method)(BASE + path, json=body, headers=auditor.headers).status_code == 403, path


def test_clients_lifecycle_with_if_match_and_rotation(http, admins, factories):
    tenant = factories.tenant()
    admin = admins.client_token("super")
    created = http.post(f"{BASE}/clients", headers=admin.headers, json={
        "tenant": tenant, "client_name": "Shop", "redirect_uris": ["https://shop.example/cb"]})
    assert created.status_code == 201, created.get_json()
    client_id, secret = created.get_json()["client_id"], created.get_json()["client_secret"]
    assert secret
    shown = http.get(f"{BASE}/clients/{client_id}", headers=admin.headers)
    assert "client_secret" not in shown.get_json() or shown.get_json()["client_secret"] is None
    etag = shown.headers["ETag"]

    no_match = http.patch(f"{BASE}/clients/{client_id}", json={"client_name": "Shop 2"}, headers=admin.headers)
    assert no_match.status_code == 428
    patched = http.patch(f"{BASE}/clients/{client_id}", json={"client_name": "Shop 2"},
                         headers={**admin.headers, "If-Match": etag})
    assert patched.status_code == 200 and patched.get_json()["client_name"] == "Shop 2"
    stale = http.patch(f"{BASE}/clients/{client_id}", json={"client_name": "Shop 3"},
                       headers={**admin.headers, "If-Match": etag})
    assert stale.status_code == 412 and stale.get_json()["reason"] == "precondition_failed"
    bad_uri = http.patch(f"{BASE}/clients/{client_id}", json={"redirect_uris": ["http://evil.example/cb"]},
                         headers={**admin.headers, "If-Match": patched.headers["ETag"]})
    assert bad_uri.status_code == 400

    rotated = http.post(f"{BASE}/clients/{client_id}/rotate-secret", json={"grace_seconds": 0}, headers=admin.headers)
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["client_secret"]
    assert new_secret and new_secret != secret

    disabled = http.post(f"{BASE}/clients/{client_id}/disable", headers=admin.headers)
    assert disabled.get_json()["disabled"] is True
    assert http.post(f"{BASE}/clients/{client_id}/enable", headers=admin.headers).get_json()["disabled"] is False
    kinds = [e["kind"] for e in http.get(f"{BASE}/audit", query_string={"client": client_id},
                                         headers=admin.headers).get_json()["items"]]
    assert kinds[:5] == ["client.enabled", "client.disabled", "client.secret_rotated", "client.updated", "client.created"]
    deleted = http.delete(f"{BASE}/clients/{client_id}", headers=admin.headers)
    assert deleted.status_code == 200
    assert http.get(f"{BASE}/clients/{client_id}", headers=admin.headers).status_code == 404


def test_tenants_create_update_with_if_match(http, admins):
    admin = admins.client_token("super")
    created = http.post(f"{BASE}/tenants", headers=admin.headers,
                        json={"slug": "acme-cn", "name": "艾克米", "branding": {"primary_color": "#123456"}})
    assert created.status_code == 201 and created.get_json()["name"] == "艾克米"
    assert http.post(f"{BASE}/tenants", headers=admin.headers, json={"slug": "acme-cn", "name": "x"}).status_code == 409
    etag = created.headers["ETag"]
    changed = http.patch(f"{BASE}/tenants/acme-cn", headers={**admin.headers, "If-Match": etag},
                         json={"branding": {"primary_color": None, "logo_uri": "https://cdn.example/logo.png"}})
    assert changed.status_code == 200
    assert changed.get_json()["branding"] == {"logo_uri": "https://cdn.example/logo.png"}
    bad = http.patch(f"{BASE}/tenants/acme-cn", headers={**admin.headers, "If-Match": changed.headers["ETag"]},
                     json={"branding": {"primary_color": "red;}"}})
    assert bad.status_code == 400


def test_lists_page_with_cursors(http, admins, factories):
    tenant = factories.tenant()
    for _ in range(5):
        factories.client(tenant=tenant)
    admin = admins.client_token("super")
    seen, cursor = [], None
    while True:
        query = {"limit": 2, "tenant": tenant, **({"cursor": cursor} if cursor else {})}
        answer = http.get(f"{BASE}/clients", query_string=query, headers=admin.headers).get_json()
        assert len(answer["items"]) <= 2
        seen += [c["client_id"] for c in answer["items"]]
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 == len(set(seen))
    bad = http.get(f"{BASE}/clients", query_string={"cursor": "garbage!"}, headers=admin.headers)
    assert bad.status_code == 400 and bad.get_json()["reason"] == "invalid_cursor"
    assert http.get(f"{BASE}/clients", query_string={"limit": 0}, headers=admin.headers).status_code == 400


def test_audit_export_is_json_lines_and_sessions_end_one_by_one(http, admins, factories, app):
    from app.oidc.models import SSOSession
    from tests.rp import Browser, RelyingParty, authorize, code_from
    from tests.conftest import ISSUER

    person = factories.account()
    site = factories.client(trusted=True)
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(browser, rp, person)
    code_from(response, request)
    admin = admins.client_token("super")
    sessions = http.get(f"{BASE}/users/{person.id}/sessions", headers=admin.headers).get_json()["items"]
    assert len(sessions) == 1
    assert http.delete(f"{BASE}/sessions/{sessions[0]['sid']}", headers=admin.headers).status_code == 200
    assert http.delete(f"{BASE}/sessions/{sessions[0]['sid']}", headers=admin.headers).status_code == 404
    with app.app_context():
        assert db.session.scalar(db.select(SSOSession).filter_by(sid=sessions[0]["sid"])).ended_at is not None
    export = http.get(f"{BASE}/audit/export", query_string={"user": person.id}, headers=admin.headers)
    assert export.status_code == 200 and export.mimetype == "application/jsonl"
    import json
    kinds = [json.loads(line)["kind"] for line in export.get_data(as_text=True).splitlines()]
    assert "account.session_ended" in kinds
    assert http.get(f"{BASE}/audit", query_string={"since": "yesterday"}, headers=admin.headers).status_code == 400


def test_an_operator_merge_through_the_api(http, admins, factories):
    survivor, absorbed = factories.account(), factories.account()
    admin = admins.client_token("super")
    preview = http.post(f"{BASE}/merges/preview", json={"survivor": survivor.id, "absorbed": absorbed.id},
                        headers=admin.headers)
    assert preview.status_code == 200, preview.get_json()
    support = admins.client_token("support")
    assert http.post(f"{BASE}/merges", json={"survivor": survivor.id, "absorbed": absorbed.id, "reason": "same person"},
                     headers=support.headers).status_code == 403
    assert http.post(f"{BASE}/merges", json={"survivor": survivor.id, "absorbed": 2**31 + 5, "reason": "x"},
                     headers=admin.headers).status_code == 404
    merged = http.post(f"{BASE}/merges", json={"survivor": survivor.id, "absorbed": absorbed.id, "reason": "same person"},
                       headers=admin.headers)
    assert merged.status_code == 201 and merged.get_json()["status"] == "completed", merged.get_json()
    shown = http.get(f"{BASE}/merges/{merged.get_json()['id']}", headers=admin.headers).get_json()
    assert shown["survivor"] == survivor.id and shown["absorbed"] == absorbed.id
    assert http.get(f"{BASE}/users/{absorbed.id}", headers=admin.headers).get_json()["status"] == "merged"
    again = http.post(f"{BASE}/merges", json={"survivor": absorbed.id, "absorbed": survivor.id, "reason": "x"},
                      headers=admin.headers)
    assert again.status_code in (400, 409), again.get_json()


def test_password_reset_revoke_close_and_export(http, admins, factories, app):
    from tests.conftest import ISSUER
    from tests.rp import Browser, RelyingParty, authorize, code_from

    tenant = factories.tenant()
    site = factories.client(tenant=tenant, trusted=True)
    other_site = factories.client()
    person = factories.account(email="p@example.com")
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(browser, rp, person, scope="openid offline_access")
    tokens = rp.exchange(code_from(response, request), request).get_json()

    tenant_admin = admins.client_token("tenant_admin", tenant)
    assert http.post(f"{BASE}/users/{person.id}/reset-password", json={"generate": True},
                     headers=tenant_admin.headers).status_code == 403
    assert http.post(f"{BASE}/users/{person.id}/close", json={"reason": "x"}, headers=tenant_admin.headers).status_code == 403
    assert http.get(f"{BASE}/users/{person.id}/export", headers=tenant_admin.headers).status_code == 403
    assert http.post(f"{BASE}/users/{person.id}/revoke", json={"client": other_site.client_id},
                     headers=tenant_admin.headers).status_code == 404
    revoked = http.post(f"{BASE}/users/{person.id}/revoke", json={"client": site.client_id}, headers=tenant_admin.headers)
    assert revoked.status_code == 200 and revoked.get_json()["tokens_revoked"] >= 1
    assert rp.refresh(tokens["refresh_token"]).status_code == 400

    admin = admins.client_token("super")
    weak = http.post(f"{BASE}/users/{person.id}/reset-password", json={"password": "short"}, headers=admin.headers)
    assert weak.status_code == 400
    reset = http.post(f"{BASE}/users/{person.id}/reset-password", json={"generate": True}, headers=admin.headers)
    assert reset.status_code == 200, reset.get_json()
    new_password = reset.get_json()["password"]
    assert new_password
    fresh = Browser(app.test_client(), ISSUER)
    request, response = authorize(fresh, rp.__class__(fresh.http, ISSUER, site.client_id, site.client_secret,
                                                     site.redirect_uri), None)
    assert fresh.login(response, person.phone, new_password).status_code == 302

    export = http.get(f"{BASE}/users/{person.id}/export", headers=admin.headers)
    assert export.status_code == 200 and "password_hash" not in export.get_data(as_text=True)
    closed = http.post(f"{BASE}/users/{person.id}/close", json={"reason": "asked by phone"}, headers=admin.headers)
    assert closed.status_code == 200 and closed.get_json()["user"]["status"] == "closed"
    assert http.post(f"{BASE}/users/{person.id}/close", json={"reason": "again"}, headers=admin.headers).status_code == 409
    kinds = {e["kind"] for e in http.get(f"{BASE}/audit", query_string={"user": person.id, "limit": 200},
                                         headers=admin.headers).get_json()["items"]}
    assert {"account.consents_revoked", "account.password_reset", "account.exported", "account.deregistered"} <= kinds


def test_sessions_list_is_cut_to_the_tenant_admins_reach(http, admins, factories, app):
    from tests.conftest import ISSUER
    from tests.rp import Browser, RelyingParty, authorize, code_from

    mine = factories.tenant()
    site = factories.client(tenant=mine, trusted=True)
    elsewhere = factories.client(trusted=True, redirect_uri="https://other-site.example/cb")
    ours, theirs = factories.account(), factories.account()
    for person, client in ((ours, site), (theirs, elsewhere)):
        browser = Browser(app.test_client(), ISSUER)
        rp = RelyingParty(browser.http, ISSUER, client.client_id, client.client_secret, client.redirect_uri)
        request, response = authorize(browser, rp, person)
        rp.exchange(code_from(response, request), request)
    tenant_admin = admins.client_token("tenant_admin", mine)
    seen = {s["account_id"] for s in http.get(f"{BASE}/sessions", headers=tenant_admin.headers).get_json()["items"]}
    assert seen == {ours.id}
    admin = admins.client_token("super")
    seen = {s["account_id"] for s in http.get(f"{BASE}/sessions?limit=200", headers=admin.headers).get_json()["items"]}
    assert {ours.id, theirs.id} <= seen
    only = http.get(f"{BASE}/sessions", query_string={"user": theirs.id}, headers=admin.headers).get_json()["items"]
    assert {s["account_id"] for s in only} == {theirs.id}


def test_a_tenant_admin_chains_only_its_own_clients(http, admins, factories):
    mine = factories.tenant()
    own, foreign = factories.client(tenant=mine), factories.client()
    caller = admins.client_token("tenant_admin", mine)
    etag = http.get(f"{BASE}/tenants/{mine}", headers=caller.headers).headers["ETag"]
    refused = http.patch(f"{BASE}/tenants/{mine}", json={"policy": {"login_chain": [foreign.client_id]}},
                         headers={**caller.headers, "If-Match": etag})
    assert refused.status_code == 403
    ok = http.patch(f"{BASE}/tenants/{mine}", json={"policy": {"login_chain": [own.client_id]}},
                    headers={**caller.headers, "If-Match": etag})
    assert ok.status_code == 200 and ok.get_json()["policy"]["login_chain"] == [own.client_id]
def test_a_clients_data_contract_and_the_level_its_writes_need(http, admins, factories):
    tenant = factories.tenant()
    client = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope="partner:write")
    path = f"{BASE}/clients/{client.client_id}/contract"
    admin = admins.client_token("tenant_admin", tenant)
    shown = http.get(path, headers=admin.headers)
    assert shown.status_code == 200 and shown.get_json()["write_acr"] is None
    body = {"read": ["nickname"], "write": ["nickname"], "write_acr": "urn:tessera:loa:2"}
    assert http.put(path, json=body, headers=admin.headers).status_code == 428
    put = http.put(path, json=body, headers={**admin.headers, "If-Match": shown.headers["ETag"]})
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["write_acr"] == "urn:tessera:loa:2" and put.get_json()["write"] == ["nickname"]
    assert http.get(path, headers=admin.headers).get_json()["write_acr"] == "urn:tessera:loa:2"
    for bad in ("gold", 2):
        refused = http.put(path, json={**body, "write_acr": bad}, headers={**admin.headers, "If-Match": put.headers["ETag"]})
        assert refused.status_code == 400 and refused.get_json()["reason"] == "invalid_request"
    # PUT replaces the contract whole: without write_acr (or with null) writes need no level
    cleared = http.put(path, json={"write": ["nickname"], "write_acr": None},
                       headers={**admin.headers, "If-Match": put.headers["ETag"]})
    assert cleared.status_code == 200 and cleared.get_json()["write_acr"] is None
    # the wrong actors: an auditor reads only; another tenant's admin does not see the client
    auditor, stranger = admins.client_token("auditor"), admins.client_token("tenant_admin", factories.tenant())
    etag = cleared.headers["ETag"]
    assert http.put(path, json=body, headers={**auditor.headers, "If-Match": etag}).status_code == 403
    assert http.put(path, json=body, headers={**stranger.headers, "If-Match": etag}).status_code == 404
