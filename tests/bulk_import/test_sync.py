"""Dual-write sync API: a legacy system pushes creates, updates and deletes by legacy id, with a
client-credentials token of its tenant (scope sync:write); stale changes never win; every
refusal is an RFC 9457 problem with a stable reason."""

import hashlib
from types import SimpleNamespace

import pytest

from app.accounts.models import Account, AuditEvent, Identity
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from

PW = "legacy password 1"


@pytest.fixture
def sync(app, factories, http):
    """A sync client of a tenant: .tenant, .put/.get/.delete(legacy_id, ...) through HTTP."""
    tenant = factories.tenant()
    client = factories.client(tenant=tenant, grant_types=["client_credentials"], redirect_uris=[], scope="sync:write")
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    token = rp.token_request({"grant_type": "client_credentials", "scope": "sync:write"}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def url(legacy_id, slug=None):
        return f"/api/sync/{slug or tenant}/accounts/{legacy_id}"

    return SimpleNamespace(
        tenant=tenant, client=client, headers=headers, url=url,
        put=lambda legacy_id, body, slug=None: http.put(url(legacy_id, slug), json=body, headers=headers),
        get=lambda legacy_id: http.get(url(legacy_id), headers=headers),
        delete=lambda legacy_id, **q: http.delete(url(legacy_id), query_string=q, headers=headers),
    )


def _record(**fields):
    record = {"username": "alice", "phone": "+14155550100", "phone_verified": True, "email": "alice@example.com",
              "email_verified": True, "name": "Alice", "password_hash": "s$" + hashlib.md5(b"s" + PW.encode()).hexdigest(),
              "password_format": "salted_md5:{salt}{password}", "attributes": {"level": "gold"}, "version": 1}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


def _problem(response, status, reason):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["reason"] == reason and body["status"] == status and body["title"] and body["detail"]
    return body


def _mapping(app, tenant_slug, legacy_id):
    from app.tenants.models import Tenant

    with app.app_context():
        tenant = db.session.scalar(db.select(Tenant).filter_by(slug=tenant_slug))
        mapping = db.session.scalar(db.select(LegacyMapping).filter_by(tenant_id=tenant.id, legacy_id=legacy_id))
        db.session.expunge_all()
        return mapping


def test_put_creates_then_updates_and_get_answers_the_state(app, sync, browser, factories, http):
    created = sync.put("L1", _record())
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["result"] == "created" and body["legacy_id"] == "L1" and body["status"] == "active"
    assert body["has_password"] and body["profile"]["name"] == "Alice" and body["attributes"] == {"level": "gold"}
    assert {(i["kind"], i["value"]) for i in body["identities"]} == {
        ("username", "alice"), ("phone", "+14155550100"), ("email", "alice@example.com")}
    assert body["sub"] and "id" not in body

    # The same change again (delivery is at least once): nothing changes.
    again = sync.put("L1", _record())
    assert again.status_code == 200 and again.get_json()["result"] == "unchanged"

    updated = sync.put("L1", _record(version=2, name="Alice B", email="alice@new.example.com", attributes={"level": "vip"}))
    assert updated.status_code == 200 and updated.get_json()["result"] == "updated"
    state = sync.get("L1").get_json()
    assert state["profile"]["name"] == "Alice B" and state["attributes"] == {"level": "vip"} and state["version"] == 2
    assert ("email", "alice@new.example.com") in {(i["kind"], i["value"]) for i in state["identities"]}
    assert ("email", "alice@example.com") not in {(i["kind"], i["value"]) for i in state["identities"]}

    # The synced account logs in with its legacy password at a site of the tenant; it becomes argon2id.
    mapping = _mapping(app, sync.tenant, "L1")
    site = factories.client(tenant=sync.tenant, trusted=True)
    request, response = authorize(browser, RelyingParty.for_client(http, ISSUER, site),
                                  SimpleNamespace(phone="alice", password=PW))
    code_from(response, request)
    with app.app_context():
        assert db.session.get(Account, mapping.account_id).password_hash.startswith("$argon2id$")
        kinds = [e.kind for e in db.session.scalars(db.select(AuditEvent).filter_by(account_id=mapping.account_id))]
    assert "legacy.created" in kinds and "legacy.updated" in kinds and "login.success" in kinds


def test_a_stale_change_is_refused_and_changes_nothing(app, sync):
    assert sync.put("L2", _record(version=5)).status_code == 201
    _problem(sync.put("L2", _record(version=4, name="Old")), 409, "stale")
    _problem(sync.put("L2", _record(version=5, name="Same version, other content")), 409, "stale")
    assert sync.get("L2").get_json()["profile"]["name"] == "Alice"

    # Ordered by updated_at when there are no versions.
    body = _record(version=None, username="bob", phone="+14155550101", email="bob@example.com",
                   updated_at="2024-05-01T10:00:00Z")
    assert sync.put("L3", body).status_code == 201
    _problem(sync.put("L3", {**body, "name": "Older", "updated_at": "2024-04-30T10:00:00Z"}), 409, "stale")
    newer = sync.put("L3", {**body, "name": "Newer", "updated_at": 1714600000})
    assert newer.status_code == 200 and newer.get_json()["profile"]["name"] == "Newer"
    _problem(sync.put("L4", _record(version=None, username="carol", phone=None, email=None)), 400, "invalid_record")


def test_an_identifier_of_an_account_the_tenant_did_not_create_waits_for_proof(app, sync, factories):
    """Verified on both sides or not, the legacy system's word does not join someone else's
    account: 202 pending_proof, nothing written, and the answer holds only what it sent."""
    existing = factories.account(phone="+14155550111", name="Hub Name")
    before = _count(app, Account), _count(app, Identity)
    for legacy_id, verified in (("L5", True), ("L6", False)):
        pending = sync.put(legacy_id, _record(username=f"u-{legacy_id}", phone="+14155550111", phone_verified=verified,
                                              email=f"{legacy_id}@example.com", name="Legacy Name"))
        assert pending.status_code == 202, pending.get_data(as_text=True)
        body = pending.get_json()
        assert (body["result"], body["legacy_id"], body["conflict"], body["held"]) == (
            "pending_proof", legacy_id, "same_phone", "phone")
        assert not {"sub", "identities", "profile", "attributes", "account_id"} & set(body)
        assert _mapping(app, sync.tenant, legacy_id) is None
    assert (_count(app, Account), _count(app, Identity)) == before
    with app.app_context():
        account = db.session.get(Account, existing.id)
        assert account.name == "Hub Name" and account.identity("email") is None
    state = sync.get("L5")
    assert state.status_code == 200 and state.get_json()["result"] == "pending_proof"
    # A redelivery is the same answer; a stale one is refused; a change that no longer names the
    # held identifier creates an account of its own.
    assert sync.put("L5", _record(username="u-L5", phone="+14155550111", email="L5@example.com",
                                  name="Legacy Name")).status_code == 202
    _problem(sync.put("L5", _record(version=0, phone="+14155550111")), 409, "stale")
    created = sync.put("L5", _record(version=2, username="u-L5", phone="+14155550112", email="L5@example.com"))
    assert created.status_code == 201 and created.get_json()["result"] == "created"
    assert _mapping(app, sync.tenant, "L5").account_id != existing.id
    # Deleting a legacy id that waits closes its conflict; the legacy id is never reused.
    assert sync.delete("L6").get_json()["result"] == "deleted"
    _problem(sync.put("L6", _record(version=9, username="u-L6", phone="+14155550113", email=None)), 409, "deleted")


def test_a_second_legacy_id_joins_an_account_the_tenant_created_by_the_verified_phone(app, sync):
    assert sync.put("L7", _record(username="dora", phone="+14155550114", email="dora@example.com")).status_code == 201
    linked = sync.put("L8", _record(username="dora2", phone="+14155550114", email=None, name="Other Name"))
    assert linked.status_code == 201 and linked.get_json()["result"] == "linked"
    assert _mapping(app, sync.tenant, "L8").account_id == _mapping(app, sync.tenant, "L7").account_id
    assert not _mapping(app, sync.tenant, "L8").created_account and _mapping(app, sync.tenant, "L7").created_account
    _problem(sync.put("L9", _record(username="dora3", phone="+14155550114", phone_verified=False, email=None)),
             409, "phone_conflict")


def test_identifier_conflicts_change_nothing(app, sync, factories):
    factories.account(email="taken@example.com")
    assert sync.put("L8", _record(username="gina", phone="+14155550120", email="gina@example.com")).status_code == 201
    before = _count(app, Account)
    # Someone else's email: waits for proof. The tenant's own account's: a conflict, as between two
    # of its records.
    assert sync.put("L9", _record(username="hank", phone="+14155550121", email="taken@example.com")).status_code == 202
    _problem(sync.put("L10", _record(username="hank", phone="+14155550121", email="gina@example.com")), 409, "email_conflict")
    _problem(sync.put("L10", _record(username="gina", phone="+14155550121", email=None)), 409, "username_conflict")
    # An update naming someone else's identifier: nothing written either.
    _problem(sync.put("L8", _record(version=2, username="gina", phone="+14155550120", email="taken@example.com")),
             409, "email_conflict")
    assert _count(app, Account) == before and _mapping(app, sync.tenant, "L10") is None


def test_delete_closes_the_account_unless_something_else_holds_it(app, sync, factories, http, browser):
    assert sync.put("L10", _record(username="ivan", phone="+14155550130", email=None, version=3)).status_code == 201
    _problem(sync.delete("L10", version=2), 409, "stale")
    deleted = sync.delete("L10", version=4)
    assert deleted.status_code == 200 and deleted.get_json()["result"] == "closed"
    assert deleted.get_json()["status"] == "closed" and deleted.get_json()["deleted_at"]
    assert sync.delete("L10", version=4).get_json()["result"] == "closed"  # idempotent
    _problem(sync.put("L10", _record(username="ivan", phone="+14155550130", email=None, version=9)), 409, "deleted")
    _problem(sync.delete("nope"), 404, "unknown_legacy_id")

    # Held by another tenant's legacy account too: the mapping is marked, the account stays.
    other = factories.tenant()
    other_client = factories.client(tenant=other, grant_types=["client_credentials"], redirect_uris=[], scope="sync:write")
    token = RelyingParty(http, ISSUER, other_client.client_id, other_client.client_secret, None).token_request(
        {"grant_type": "client_credentials", "scope": "sync:write"}).get_json()["access_token"]
    assert sync.put("L11", _record(username="judy", phone="+14155550131", email=None)).status_code == 201
    response = http.put(f"/api/sync/{other}/accounts/X1", headers={"Authorization": f"Bearer {token}"},
                        json=_record(username="judy", phone="+14155550131", email=None))
    assert response.get_json()["result"] == "pending_proof"
    # The person logs in at a site of the other tenant: the proof, the link.
    code_from(*reversed(_login(factories, http, browser, other, "+14155550131", PW)))
    assert _mapping(app, other, "X1").account_id == _mapping(app, sync.tenant, "L11").account_id
    kept = sync.delete("L11", version=2)
    assert kept.get_json()["result"] == "deleted" and kept.get_json()["status"] == "active"
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).filter_by(kind="legacy.deleted").order_by(AuditEvent.id.desc()))
        assert event.details["kept_by"] == "another legacy account"


def test_authentication_scope_and_tenant(app, sync, factories, http):
    _problem(http.put(sync.url("L12"), json=_record()), 401, "token_missing")
    _problem(http.put(sync.url("L12"), json=_record(), headers={"Authorization": "Bearer nope"}), 401, "token_invalid")
    other_scope = factories.client(tenant=sync.tenant, grant_types=["client_credentials"], redirect_uris=[],
                                   scope="partner:lookup")
    token = RelyingParty(http, ISSUER, other_scope.client_id, other_scope.client_secret, None).token_request(
        {"grant_type": "client_credentials", "scope": "partner:lookup"}).get_json()["access_token"]
    _problem(http.put(sync.url("L12"), json=_record(), headers={"Authorization": f"Bearer {token}"}), 403,
             "insufficient_scope")
    _problem(sync.put("L12", _record(), slug=factories.tenant()), 403, "wrong_tenant")
    _problem(sync.get("L12"), 404, "unknown_legacy_id")
    _problem(http.put(sync.url("L12"), data="not json", headers=sync.headers), 400, "invalid_json")
    _problem(sync.put("L12", _record(legacy_id="other")), 400, "invalid_record")
    _problem(sync.put("L12", _record(password_format="rot13")), 400, "invalid_record")
    _problem(sync.put("L12", _record(version="v2")), 400, "invalid_record")
    assert _mapping(app, sync.tenant, "L12") is None


def test_attributes_are_the_tenants(app, sync):
    assert sync.put("L13", _record(username="kim", phone="+14155550140", email=None)).status_code == 201
    mapping = _mapping(app, sync.tenant, "L13")
    with app.app_context():
        row = db.session.scalar(db.select(AccountAttributes).filter_by(account_id=mapping.account_id))
        assert row.tenant_id == mapping.tenant_id and row.data == {"level": "gold"}


def _login(factories, http, browser, tenant, login, password):
    """A password login (prompt=login: always the form) at a new site of ``tenant``."""
    site = factories.client(tenant=tenant, trusted=True)
    return authorize(browser, RelyingParty.for_client(http, ISSUER, site), SimpleNamespace(phone=login, password=password),
                     prompt="login")


def _count(app, model):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model))


def test_changes_pushed_by_the_legacy_system_reach_subscribed_partners(app, sync, factories, http, receiver):
    """A legacy update of a person a partner knows is a claims change like any other: the name
    and the phone (the phone_number claim) it changed, in one change; then the tenant attribute
    it changed, for a partner of that tenant."""
    from app.worker import run_once
    from tests.partners.conftest import Partners

    assert sync.put("L9", _record()).status_code == 201
    account_id = _mapping(app, sync.tenant, "L9").account_id
    partners = Partners(app, factories, http)
    subscriber = partners.make(read="name,phone_number,attributes.level", subscribe=True, tenant=sync.tenant,
                               events_endpoint=f"{receiver.url}/events")
    sub = partners.share(subscriber, account_id)
    assert sync.put("L9", _record(version=2, name="Alice B", phone="+14155550177")).status_code == 200
    assert sync.put("L9", _record(version=3, name="Alice B", phone="+14155550177", attributes={"level": "silver"})).status_code == 200
    with app.app_context():
        while run_once():
            pass
    events = [r["claims"]["events"]["urn:tessera:event:claims-changed"] for r in receiver.requests]
    assert [(e["subject"]["sub"], e["claims"]) for e in events] == [(sub, ["name", "phone_number"]),
                                                                     (sub, ["attributes.level"])]


def _identities(app, account_id):
    with app.app_context():
        return {(i.kind, i.value) for i in db.session.scalars(
            db.select(Identity).filter_by(account_id=account_id, released_at=None))}


def _password_login_works(factories, http, browser, tenant, login, password) -> bool:
    request, response = _login(factories, http, browser, tenant, login, password)
    if response.status_code == 302 and "code=" in (response.location or ""):
        return True
    assert response.status_code == 401 and "wrong identifier or password" in response.get_data(as_text=True)
    return False


def test_a_tenants_legacy_system_cannot_take_over_someone_elses_account(app, sync, factories, http, browser):
    """The attack of the hardening issue: tenant A's sync client, knowing only the phone number of
    a person who uses tenant B's sites, claims it "verified", then sends an email and a password
    hash it knows. Nothing of the person's account changes; the link waits for the person; once
    the person proves it by logging in at a site of tenant A, the tenant may fill in what the
    account lacks — still never its password, phone or email."""
    import argon2

    tenant_b = factories.tenant()
    victim = factories.account(phone="+14155550190", email="victim@example.com")
    assert _password_login_works(factories, http, browser, tenant_b, victim.phone, victim.password)
    with app.app_context():
        victim_hash = db.session.get(Account, victim.id).password_hash
    attacker_pw = "attacker password 1"
    attacker_hash = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(attacker_pw)

    first = sync.put("L1", {"phone": victim.phone, "phone_verified": True, "version": 1})
    assert first.status_code == 202 and first.get_json()["result"] == "pending_proof"
    second = sync.put("L1", {"phone": victim.phone, "phone_verified": True, "email": "attacker@example.com",
                             "email_verified": True, "password_hash": attacker_hash, "name": "Mallory", "version": 2})
    assert second.status_code == 202 and second.get_json()["result"] == "pending_proof"
    assert _mapping(app, sync.tenant, "L1") is None
    assert _identities(app, victim.id) == {("phone", victim.phone), ("email", "victim@example.com")}
    with app.app_context():
        account = db.session.get(Account, victim.id)
        assert account.password_hash == victim_hash and account.name is None
    assert not _password_login_works(factories, http, browser, tenant_b, victim.phone, attacker_pw)
    assert not _password_login_works(factories, http, browser, tenant_b, "attacker@example.com", attacker_pw)
    assert _password_login_works(factories, http, browser, tenant_b, victim.phone, victim.password)

    # Operators see the conflict; a login at another tenant's site proves nothing for tenant A.
    listed = app.test_cli_runner().invoke(args=["sync", "conflicts", sync.tenant, "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = __import__("json").loads(listed.output)
    assert (row["legacy_id"], row["kind"], row["value"], row["account_id"], row["status"]) == (
        "L1", "same_phone", victim.phone, victim.id, "pending")
    assert _mapping(app, sync.tenant, "L1") is None

    # The person logs in at a site of tenant A: the proof. The link is made; only what the account
    # lacked is filled in (the name), never the password or the email.
    assert _password_login_works(factories, http, browser, sync.tenant, victim.phone, victim.password)
    mapping = _mapping(app, sync.tenant, "L1")
    assert mapping is not None and mapping.account_id == victim.id and not mapping.created_account
    assert sync.get("L1").get_json()["result"] == "current"
    with app.app_context():
        account = db.session.get(Account, victim.id)
        assert account.name == "Mallory" and account.password_hash == victim_hash
    assert _identities(app, victim.id) == {("phone", victim.phone), ("email", "victim@example.com")}

    # Later updates of the linked legacy id: attributes and missing claims, never the password,
    # phone or email; the person's password still works, the tenant's does not.
    updated = sync.put("L1", {"phone": "+14155550191", "phone_verified": True, "email": "attacker2@example.com",
                              "email_verified": True, "password_hash": attacker_hash, "name": "Mallory B",
                              "username": "mallory", "attributes": {"level": "gold"}, "version": 3})
    assert updated.status_code == 200 and updated.get_json()["result"] == "updated"
    assert any(w.startswith("password") for w in updated.get_json()["warnings"])
    assert _identities(app, victim.id) == {("phone", victim.phone), ("email", "victim@example.com"),
                                           ("username", "mallory")}
    with app.app_context():
        account = db.session.get(Account, victim.id)
        assert account.password_hash == victim_hash and account.name == "Mallory"
        assert db.session.scalar(db.select(AccountAttributes.data).filter_by(account_id=victim.id)) == {"level": "gold"}
    assert not _password_login_works(factories, http, browser, sync.tenant, victim.phone, attacker_pw)
    assert not _password_login_works(factories, http, browser, sync.tenant, "mallory", attacker_pw)
    assert _password_login_works(factories, http, browser, tenant_b, victim.phone, victim.password)
    # The tenant sees the identities it added, not the person's.
    assert {(i["kind"], i["value"]) for i in sync.get("L1").get_json()["identities"]} == {("username", "mallory")}


def test_a_tenant_replaces_only_the_identities_its_legacy_system_added(app, sync):
    """On an account its record created, the tenant's update replaces its own email; an email
    added in the hub (by the person) stays, and the record's is then not added."""
    assert sync.put("L20", _record(username="olga", phone="+14155550192", email="olga@example.com")).status_code == 201
    account_id = _mapping(app, sync.tenant, "L20").account_id
    with app.app_context():
        own = db.session.scalar(db.select(Identity).filter_by(account_id=account_id, kind="email"))
        own.released_at = db.func.now()
        db.session.add(Identity(account_id=account_id, kind="email", namespace="", value="olga@home.example", verified=True))
        db.session.commit()
    updated = sync.put("L20", _record(version=2, username="olga", phone="+14155550193", email="olga@new.example.com"))
    assert updated.status_code == 200 and any(w.startswith("email: kept") for w in updated.get_json()["warnings"])
    assert _identities(app, account_id) == {("username", "olga"), ("phone", "+14155550193"),
                                            ("email", "olga@home.example")}


@pytest.mark.parametrize("password_hash", ["$6$saltsalt$", "pbkdf2_sha256$1000$salt$", "$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r"])
def test_a_password_hash_that_can_never_verify_is_refused(app, sync, password_hash):
    _problem(sync.put("L21", _record(password_hash=password_hash, password_format=None)), 400, "invalid_record")
    assert _mapping(app, sync.tenant, "L21") is None
