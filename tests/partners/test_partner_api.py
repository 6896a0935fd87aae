"""Partner data API over HTTP: one-way reads, two-way writes, lookups, register-on-write, change
propagation, Token Exchange; consent and contract enforcement; every refusal a problem with a reason."""

from __future__ import annotations

import hashlib

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from


def _reason(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/problem+json"
    return response.get_json()["reason"]


def _audit(app, kind: str) -> list:
    from app.accounts.models import AuditEvent
    from app.extensions import db

    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(kind=kind)))


# --- one-way ----------------------------------------------------------------------------------------
def test_read_returns_the_read_contract_only_with_provenance_and_an_etag(app, http, factories, partners):
    partner = partners.make(read="name,nickname,phone_number", write="nickname")
    person = factories.account(name="Li Lei", nickname="lilei", given_name="Lei")
    sub = partners.share(partner, person.id)

    response = http.get(f"/api/users/{sub}", headers=partner.headers("partner:read"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["sub"] == sub
    assert body["claims"] == {"name": "Li Lei", "nickname": "lilei", "phone_number": person.phone}
    assert "given_name" not in body["claims"]  # outside the contract: never returned
    assert response.headers["ETag"] == body["etag"] and response.headers["Cache-Control"] == "no-store"
    assert [e.details["claims"] for e in _audit(app, "partner.read")] == [["name", "nickname", "phone_number"]]


def test_no_consent_answers_exactly_like_an_unknown_person(http, factories, partners):
    partner = partners.make()
    person = factories.account(nickname="private")
    sub = partners.share(partner, person.id, consent=False)  # the client knows the sub, the person never agreed
    headers = partner.headers()
    hidden = http.get(f"/api/users/{sub}", headers=headers)
    unknown = http.get("/api/users/no-such-subject", headers=headers)
    assert _reason(hidden, 404) == _reason(unknown, 404) == "user_not_found"
    assert hidden.get_json() == unknown.get_json()
    assert http.get(f"/api/users/{sub}/addresses", headers=headers).get_json() == unknown.get_json()
    patch = http.patch(f"/api/users/{sub}", json={"nickname": "x"}, headers={**headers, "If-Match": '"x"'})
    assert _reason(patch, 404) == "user_not_found"


def test_consent_given_on_the_consent_page_and_first_party_agreement(app, http, factories, partners):
    partner = partners.make(read="nickname")
    person = factories.account(nickname="consented")
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, partner.client_id, partner.client_secret, partner.redirect_uri)
    request, response = authorize(browser, rp, person, scope="openid partner")
    tokens = rp.exchange(code_from(response, request), request).get_json()
    sub = rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]
    assert http.get(f"/api/users/{sub}", headers=partner.headers()).get_json()["claims"] == {"nickname": "consented"}

    first_party = partners.make(read="nickname", trusted=True)  # the tenant agreed for its own site
    other = factories.account(nickname="employee")
    sub = partners.share(first_party, other.id, consent=False)
    assert http.get(f"/api/users/{sub}", headers=first_party.headers()).get_json()["claims"] == {"nickname": "employee"}


def test_batch_read(http, factories, partners):
    partner = partners.make(read="nickname")
    shared, hidden = factories.account(nickname="a"), factories.account(nickname="b")
    sub_shared, sub_hidden = partners.share(partner, shared.id), partners.share(partner, hidden.id, consent=False)
    headers = partner.headers()
    body = http.post("/api/users:batch-read", json={"subs": [sub_shared, sub_hidden, "unknown"]}, headers=headers).get_json()
    assert [(u["sub"], u["claims"]) for u in body["users"]] == [(sub_shared, {"nickname": "a"})]
    assert body["not_found"] == [sub_hidden, "unknown"]
    too_many = http.post("/api/users:batch-read", json={"subs": [f"s{i}" for i in range(101)]}, headers=headers)
    assert _reason(too_many, 400) == "invalid_request"
    assert _reason(http.post("/api/users:batch-read", data="not json", headers=headers), 400) == "invalid_request"


def test_batch_read_answers_what_single_reads_answer_person_by_person(http, factories, partners):
    """The batch reads addresses, attributes, provenance and consents for everyone at once: each
    person must still get exactly their own values (and their own ETag)."""
    partner = partners.make(read="nickname,addresses,phone_number,attributes.*", write="nickname,addresses,attributes.*")
    headers = partner.headers()
    people = [factories.account(nickname=f"p{i}", phone=f"+86138001390{i:02d}") for i in range(5)]
    subs = [partners.share(partner, person.id) for person in people]
    for i, sub in enumerate(subs[:3]):
        etag = http.get(f"/api/users/{sub}", headers=headers).headers["ETag"]
        done = http.patch(f"/api/users/{sub}", json={"nickname": f"renamed{i}", "attributes": {"tier": f"t{i}"}},
                          headers={**headers, "If-Match": etag})
        assert done.status_code == 200, done.get_json()
        for n in range(i + 1):  # 1, 2 and 3 address entries
            assert http.post(f"/api/users/{sub}/addresses", json={"label": f"a{n}", "locality": f"city{i}.{n}"},
                             headers=headers).status_code == 201
    closed = factories.account(nickname="closed")
    sub_closed = partners.share(partner, closed.id)
    with partners.app.app_context():
        from app.accounts.models import Account
        from app.extensions import db

        db.session.get(Account, closed.id).status = "closed"
        db.session.commit()

    body = http.post("/api/users:batch-read", json={"subs": [subs[4], sub_closed, *subs, subs[0]]}, headers=headers).get_json()
    assert body["not_found"] == [sub_closed]
    assert [u["requested_sub"] for u in body["users"]] == [subs[4], subs[0], subs[1], subs[2], subs[3]]
    for user in body["users"]:
        single = http.get(f"/api/users/{user['requested_sub']}", headers=headers)
        assert {k: v for k, v in user.items() if k != "requested_sub"} == single.get_json()
        assert user["etag"] == single.headers["ETag"]
    by_sub = {u["sub"]: u["claims"] for u in body["users"]}
    assert [len(by_sub[s]["addresses"]) for s in subs] == [1, 2, 3, 0, 0]
    assert by_sub[subs[2]]["attributes"] == {"tier": "t2"} and by_sub[subs[3]]["attributes"] == {}
    with partners.app.app_context():  # one audit event per person read, none for the closed account
        from app.accounts.models import AuditEvent

        events = db.session.scalars(db.select(AuditEvent).filter_by(kind="partner.read")).all()
        batch = sorted((e.account_id, e.details["claims"]) for e in events if e.details.get("batch"))
        assert batch == sorted((p.id, ["addresses", "attributes", "nickname", "phone_number"]) for p in people)
        assert all(e.actor == f"client:{partner.client_id}" and e.ip_address for e in events)


def test_lookup_by_phone_or_salted_hash_only_for_people_who_agreed(app, http, factories, partners):
    partner = partners.make()
    shared, hidden = factories.account(phone="+8613800138000"), factories.account(phone="+8613800138001")
    sub = partners.share(partner, shared.id)
    partners.share(partner, hidden.id, consent=False)
    headers = partner.headers("partner:lookup")

    assert http.post("/api/users:lookup", json={"phone": "+86 138 0013 8000"}, headers=headers).get_json() == {"sub": sub}
    digest = hashlib.sha256((partner.salt + "+8613800138000").encode()).hexdigest()
    assert http.post("/api/users:lookup", json={"phone_hash": digest}, headers=headers).get_json() == {"sub": sub}

    not_consented = http.post("/api/users:lookup", json={"phone": "+8613800138001"}, headers=headers)
    unregistered = http.post("/api/users:lookup", json={"phone": "+8613800138009"}, headers=headers)
    hidden_hash = hashlib.sha256((partner.salt + "+8613800138001").encode()).hexdigest()
    by_hash = http.post("/api/users:lookup", json={"phone_hash": hidden_hash}, headers=headers)
    assert _reason(not_consented, 404) == _reason(unregistered, 404) == _reason(by_hash, 404) == "user_not_found"
    assert not_consented.get_json() == unregistered.get_json() == by_hash.get_json()

    assert _reason(http.post("/api/users:lookup", json={"phone": "12"}, headers=headers), 422) == "invalid_phone"
    assert _reason(http.post("/api/users:lookup", json={"phone_hash": "zz"}, headers=headers), 422) == "invalid_phone_hash"
    both = http.post("/api/users:lookup", json={"phone": "+8613800138000", "phone_hash": digest}, headers=headers)
    assert _reason(both, 400) == "invalid_request"
    assert _reason(http.post("/api/users:lookup", json={"phone": "+8613800138000"}, headers=partner.headers("partner:read")), 403) == "insufficient_scope"
    assert len(_audit(app, "partner.lookup")) == 5


# --- two-way ----------------------------------------------------------------------------------------
def test_patch_writes_the_write_contract_only_and_nothing_on_refusal(app, http, factories, partners):
    partner = partners.make(read="name,nickname", write="nickname")
    person = factories.account(name="Han Meimei", nickname="old")
    sub = partners.share(partner, person.id)
    headers = partner.headers()
    etag = http.get(f"/api/users/{sub}", headers=headers).headers["ETag"]

    refused = http.patch(f"/api/users/{sub}", json={"nickname": "new", "name": "Mallory"}, headers={**headers, "If-Match": etag})
    assert _reason(refused, 403) == "claim_not_writable"
    unknown = http.patch(f"/api/users/{sub}", json={"shoe_size": "42"}, headers={**headers, "If-Match": etag})
    assert _reason(unknown, 422) == "unknown_claim"
    too_long = http.patch(f"/api/users/{sub}", json={"nickname": "x" * 101}, headers={**headers, "If-Match": etag})
    assert _reason(too_long, 422) == "invalid_value"
    assert http.get(f"/api/users/{sub}", headers=headers).get_json()["claims"] == {"name": "Han Meimei", "nickname": "old"}

    done = http.patch(f"/api/users/{sub}", json={"nickname": "new"},
                      headers={**headers, "If-Match": etag, "Content-Type": "application/merge-patch+json"})
    assert done.status_code == 200
    body = done.get_json()
    assert body["claims"] == {"name": "Han Meimei", "nickname": "new"}
    assert body["provenance"]["nickname"]["source"] == "partner"
    assert body["provenance"]["nickname"]["client_id"] == partner.client_id
    assert done.headers["ETag"] != etag
    assert [e.details["claims"] for e in _audit(app, "partner.write")] == [["nickname"]]


def test_two_writers_never_overwrite_each_other(http, factories, partners):
    tenant = partners.factories.tenant()
    a, b = partners.make(tenant=tenant), partners.make(tenant=tenant)
    person = factories.account(nickname="start")
    sub_a, sub_b = partners.share(a, person.id), partners.share(b, person.id)
    ha, hb = a.headers(), b.headers()
    etag_a = http.get(f"/api/users/{sub_a}", headers=ha).headers["ETag"]
    etag_b = http.get(f"/api/users/{sub_b}", headers=hb).headers["ETag"]

    assert http.patch(f"/api/users/{sub_a}", json={"nickname": "from-a"}, headers={**ha, "If-Match": etag_a}).status_code == 200
    lost = http.patch(f"/api/users/{sub_b}", json={"nickname": "from-b"}, headers={**hb, "If-Match": etag_b})
    assert _reason(lost, 412) == "etag_mismatch"
    assert _reason(http.patch(f"/api/users/{sub_b}", json={"nickname": "x"}, headers=hb), 428) == "if_match_required"
    assert _reason(http.patch(f"/api/users/{sub_b}", json={"nickname": "x"}, headers={**hb, "If-Match": "*"}), 428) == "if_match_required"
    fresh = http.get(f"/api/users/{sub_b}", headers=hb)
    assert fresh.get_json()["claims"]["nickname"] == "from-a"
    assert http.patch(f"/api/users/{sub_b}", json={"nickname": "from-b"},
                      headers={**hb, "If-Match": fresh.headers["ETag"]}).status_code == 200


def test_address_book_entries_with_their_own_etags_and_provenance(http, factories, partners):
    tenant = partners.factories.tenant()
    a, b = partners.make(tenant=tenant), partners.make(tenant=tenant)
    person = factories.account()
    sub_a, sub_b = partners.share(a, person.id), partners.share(b, person.id)
    ha, hb = a.headers(), b.headers()

    created = http.post(f"/api/users/{sub_a}/addresses", json={"label": "home", "locality": "Shanghai", "country": "CN"}, headers=ha)
    assert created.status_code == 201
    entry = created.get_json()
    assert entry["provenance"]["client_id"] == a.client_id and created.headers["ETag"] == entry["etag"]
    assert created.headers["Location"].endswith(f"/api/users/{sub_a}/addresses/{entry['id']}")

    listed = http.get(f"/api/users/{sub_b}/addresses", headers=hb).get_json()["addresses"]
    assert [(e["id"], e["locality"], e["provenance"]["client_id"]) for e in listed] == [(entry["id"], "Shanghai", a.client_id)]

    url_b = f"/api/users/{sub_b}/addresses/{entry['id']}"
    changed = http.put(url_b, json={"label": "home", "locality": "Hangzhou"}, headers={**hb, "If-Match": entry["etag"]})
    assert changed.status_code == 200 and changed.get_json()["provenance"]["client_id"] == b.client_id
    url_a = f"/api/users/{sub_a}/addresses/{entry['id']}"
    stale = http.put(url_a, json={"locality": "Beijing"}, headers={**ha, "If-Match": entry["etag"]})
    assert _reason(stale, 412) == "etag_mismatch"
    assert _reason(http.delete(url_a, headers={**ha, "If-Match": entry["etag"]}), 412) == "etag_mismatch"
    assert _reason(http.delete(url_a, headers=ha), 428) == "if_match_required"
    assert _reason(http.put(url_a, json={"nope": 1}, headers={**ha, "If-Match": entry["etag"]}), 422) == "invalid_value"
    assert http.delete(url_a, headers={**ha, "If-Match": changed.headers["ETag"]}).status_code == 204
    assert http.get(f"/api/users/{sub_a}/addresses", headers=ha).get_json() == {"addresses": []}
    assert _reason(http.delete(url_a, headers={**ha, "If-Match": changed.headers["ETag"]}), 404) == "address_not_found"

    reader = partners.make(tenant=tenant, read="nickname", write="nickname")
    sub_r = partners.share(reader, person.id)
    assert _reason(http.get(f"/api/users/{sub_r}/addresses", headers=reader.headers()), 403) == "claim_not_readable"
    assert _reason(http.post(f"/api/users/{sub_r}/addresses", json={"locality": "x"}, headers=reader.headers()), 403) == "claim_not_writable"


def test_custom_attributes_belong_to_the_clients_tenant(http, factories, partners):
    tenant = partners.factories.tenant()
    writer = partners.make(tenant=tenant, read="attributes.*", write="attributes.tier")
    same_tenant = partners.make(tenant=tenant, read="attributes.tier")
    other_tenant = partners.make(read="attributes.*")
    person = factories.account()
    sub_w, sub_s, sub_o = (partners.share(p, person.id) for p in (writer, same_tenant, other_tenant))
    hw = writer.headers()
    etag = http.get(f"/api/users/{sub_w}", headers=hw).headers["ETag"]

    refused = http.patch(f"/api/users/{sub_w}", json={"attributes": {"vip": True}}, headers={**hw, "If-Match": etag})
    assert _reason(refused, 403) == "claim_not_writable"
    done = http.patch(f"/api/users/{sub_w}", json={"attributes": {"tier": "gold"}}, headers={**hw, "If-Match": etag})
    assert done.get_json()["claims"]["attributes"] == {"tier": "gold"}
    assert done.get_json()["provenance"]["attributes.tier"]["client_id"] == writer.client_id
    assert http.get(f"/api/users/{sub_s}", headers=same_tenant.headers()).get_json()["claims"] == {"attributes": {"tier": "gold"}}
    assert http.get(f"/api/users/{sub_o}", headers=other_tenant.headers()).get_json()["claims"] == {"attributes": {}}

    removed = http.patch(f"/api/users/{sub_w}", json={"attributes": {"tier": None}}, headers={**hw, "If-Match": done.headers["ETag"]})
    assert removed.get_json()["claims"]["attributes"] == {}


# --- register-on-write ------------------------------------------------------------------------------
def test_register_on_write_follows_the_registration_rules(app, http, factories, partners):
    from app.tenants.service import set_policy

    partner = partners.make(read="phone_number,nickname", write="nickname")
    headers = partner.headers()
    refused = http.post("/api/users", json={"phone": "+8613900139000"}, headers=headers)
    assert _reason(refused, 403) == "registration_disabled"
    with app.app_context():
        set_policy(partner.tenant, allow_partner_registration=True)

    assert _reason(http.post("/api/users", json={"phone": "555"}, headers=headers), 422) == "invalid_phone"
    assert _reason(http.post("/api/users", json={"email": "a@b.c"}, headers=headers), 400) == "invalid_request"
    created = http.post("/api/users", json={"phone": "+86 139 0013 9000"}, headers=headers)
    assert created.status_code == 201
    sub = created.get_json()["sub"]
    body = http.get(created.headers["Location"], headers=headers).get_json()
    assert body["sub"] == sub and body["claims"]["phone_number"] == "+8613900139000"
    assert body["provenance"]["phone_number"] == {**body["provenance"]["phone_number"], "source": "registration",
                                                   "client_id": partner.client_id}

    again = http.post("/api/users", json={"phone": "+8613900139000"}, headers=headers)
    assert _reason(again, 409) == "already_registered"
    existing = factories.account(phone="+8613900139001")
    assert _reason(http.post("/api/users", json={"phone": existing.phone}, headers=headers), 409) == "already_registered"
    assert _reason(http.post("/api/users", json={"phone": "+8613900139002"}, headers=partner.headers("partner:write")), 403) == "insufficient_scope"
    assert len(_audit(app, "partner.registered")) == 1


def test_register_on_write_is_rate_limited_per_client(app, http, partners):
    from app.tenants.service import set_policy

    partner, other = partners.make(), partners.make()
    with app.app_context():
        set_policy(partner.tenant, allow_partner_registration=True)
    headers, other_headers = partner.headers(), other.headers()
    saved = app.config["TESSERA_PARTNER_REGISTER_RATE_LIMIT"]
    app.config["TESSERA_PARTNER_REGISTER_RATE_LIMIT"] = "2 per minute"
    try:
        for n in range(2):
            assert http.post("/api/users", json={"phone": f"+861390013910{n}"}, headers=headers).status_code == 201
        limited = http.post("/api/users", json={"phone": "+8613900139109"}, headers=headers)
        assert _reason(limited, 429) == "rate_limited"
        # keyed by client: another partner is not slowed down by this one
        assert _reason(http.post("/api/users", json={"phone": "+8613900139109"}, headers=other_headers), 403) == "registration_disabled"
    finally:
        app.config["TESSERA_PARTNER_REGISTER_RATE_LIMIT"] = saved


# --- change propagation ------------------------------------------------------------------------------
def test_changes_reach_subscribers_as_sets_and_through_polling(app, http, factories, partners, receiver):
    from app.accounts.profile import update_profile
    from app.worker import run_once

    tenant = partners.factories.tenant()
    writer = partners.make(tenant=tenant)
    subscriber = partners.make(tenant=tenant, read="nickname,addresses", subscribe=True, events_endpoint=f"{receiver.url}/events")
    not_shared = partners.make(tenant=tenant, read="nickname", subscribe=True, events_endpoint=f"{receiver.url}/other")
    person = factories.account(nickname="before")
    sub_w, sub_s = partners.share(writer, person.id), partners.share(subscriber, person.id)
    partners.share(not_shared, person.id, consent=False)
    hw = writer.headers()

    etag = http.get(f"/api/users/{sub_w}", headers=hw).headers["ETag"]
    http.patch(f"/api/users/{sub_w}", json={"nickname": "after", "attributes": {"x": 1}}, headers={**hw, "If-Match": etag})
    http.post(f"/api/users/{sub_w}/addresses", json={"locality": "Suzhou"}, headers=hw)
    with app.app_context():
        update_profile(person.id, nickname="by-the-person", name="Not In Contract")
        update_profile(person.id, given_name="Also Not In Contract")
        while run_once():
            pass

    events = [r["claims"] for r in receiver.requests]
    assert {r["path"] for r in receiver.requests} == {"/events"}  # nothing for the client without consent
    changed = [e["events"]["urn:tessera:event:claims-changed"] for e in events]
    assert [c["claims"] for c in changed] == [["nickname"], ["addresses"], ["nickname"]]
    assert {c["subject"]["sub"] for c in changed} == {sub_s} and {e["aud"] for e in events} == {subscriber.client_id}

    hs = subscriber.headers()
    page = http.get("/api/changes?limit=2", headers=hs).get_json()
    assert [(c["sub"], c["claims"]) for c in page["changes"]] == [(sub_s, ["nickname"])]  # the attribute change is not readable
    rest = http.get(f"/api/changes?cursor={page['next_cursor']}", headers=hs).get_json()
    assert [c["claims"] for c in rest["changes"]] == [["addresses"], ["nickname"]]
    assert http.get(f"/api/changes?cursor={rest['next_cursor']}", headers=hs).get_json()["changes"] == []
    assert http.get("/api/changes", headers=not_shared.headers()).get_json()["changes"] == []
    assert _reason(http.get("/api/changes?cursor=abc", headers=hs), 400) == "invalid_cursor"
    provenance = http.get(f"/api/users/{sub_s}", headers=hs).get_json()["provenance"]
    assert provenance["nickname"]["source"] == "self" and provenance["nickname"]["client_id"] is None


# --- merges -----------------------------------------------------------------------------------------
def test_read_after_merge_by_the_absorbed_sub(app, http, factories, partners):
    from app.merging.run import merge_accounts

    partner = partners.make(read="nickname", trusted=True)
    survivor, absorbed = factories.account(nickname="survivor"), factories.account(nickname="absorbed")
    sub_survivor, sub_absorbed = partners.share(partner, survivor.id), partners.share(partner, absorbed.id)
    with app.app_context():
        merge_accounts(survivor.id, absorbed.id, origin="operator")
    body = http.get(f"/api/users/{sub_absorbed}", headers=partner.headers()).get_json()
    assert body["sub"] == sub_survivor and body["claims"]["nickname"] == "survivor"


# --- token exchange ----------------------------------------------------------------------------------
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def test_token_exchange_gives_a_partner_token_bound_to_the_person(app, http, factories, partners):
    partner = partners.make(read="nickname", token_exchange=True)
    person, other = factories.account(nickname="me"), factories.account(nickname="someone else")
    browser = Browser(app.test_client(), ISSUER)
    front = RelyingParty(browser.http, ISSUER, partner.client_id, partner.client_secret, partner.redirect_uri)
    request, response = authorize(browser, front, person, scope="openid partner")
    tokens = front.exchange(code_from(response, request), request).get_json()
    sub = front.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]
    other_sub = partners.share(partner, other.id)

    backend = RelyingParty(http, ISSUER, partner.client_id, partner.client_secret, None)
    exchanged = backend.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token": tokens["access_token"],
                                       "subject_token_type": ACCESS_TOKEN})
    assert exchanged.status_code == 200, exchanged.get_json()
    result = exchanged.get_json()
    assert result["issued_token_type"] == ACCESS_TOKEN and set(result["scope"].split()) == {"partner:read", "partner:write"}
    assert "refresh_token" not in result
    headers = {"Authorization": f"Bearer {result['access_token']}"}
    assert http.get(f"/api/users/{sub}", headers=headers).get_json()["claims"] == {"nickname": "me"}
    assert _reason(http.get(f"/api/users/{other_sub}", headers=headers), 404) == "user_not_found"  # bound to one person
    batch = http.post("/api/users:batch-read", json={"subs": [sub, other_sub]}, headers=headers).get_json()
    assert [u["claims"] for u in batch["users"]] == [{"nickname": "me"}] and batch["not_found"] == [other_sub]
    assert _reason(http.post("/api/users:lookup", json={"phone": other.phone}, headers=headers), 403) == "insufficient_scope"

    def refused(**data):
        response = backend.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token_type": ACCESS_TOKEN, **data})
        assert response.status_code in (400, 401), response.get_json()
        return response.get_json()["error"]

    assert refused(subject_token="not-a-token") == "invalid_grant"
    assert refused(subject_token=tokens["access_token"], scope="partner:lookup") == "invalid_scope"
    assert refused(subject_token=tokens["access_token"], subject_token_type="urn:x") == "invalid_request"

    stranger = partners.make(read="nickname", token_exchange=True)  # another sector: not its token
    stranger_rp = RelyingParty(http, ISSUER, stranger.client_id, stranger.client_secret, None)
    response = stranger_rp.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token": tokens["access_token"],
                                          "subject_token_type": ACCESS_TOKEN})
    assert response.get_json()["error"] == "invalid_grant"
    plain = partners.make(read="nickname")  # not allowed the grant
    plain_rp = RelyingParty(http, ISSUER, plain.client_id, plain.client_secret, None)
    response = plain_rp.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token": tokens["access_token"],
                                       "subject_token_type": ACCESS_TOKEN})
    assert response.get_json()["error"] == "unauthorized_client"


def test_token_exchange_needs_the_persons_consent(app, http, factories, partners):
    partner = partners.make(read="nickname", token_exchange=True)
    person = factories.account()
    with app.app_context():  # an access token of the person at this client, without the "partner" consent
        from app.extensions import db
        from app.oidc.models import Token
        from app.security import token_hash

        db.session.add(Token(client_id=_client_pk(partner), account_id=person.id, access_token_hash=token_hash("user-at"),
                             family_id="f", scope="openid", issued_at=2_000_000_000 - 10, expires_in=3600))
        db.session.commit()
    backend = RelyingParty(http, ISSUER, partner.client_id, partner.client_secret, None)
    response = backend.token_request({"grant_type": TOKEN_EXCHANGE, "subject_token": "user-at", "subject_token_type": ACCESS_TOKEN})
    assert response.get_json()["error"] == "invalid_grant"


def _client_pk(partner) -> int:
    from app.oidc.clients import get_client

    return get_client(partner.client_id).id


# --- the contract of the API itself -----------------------------------------------------------------
def test_every_refusal_is_a_problem_with_a_reason(http, factories):
    no_contract = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:read")
    rp = RelyingParty(http, ISSUER, no_contract.client_id, no_contract.client_secret, None)
    token = rp.token_request({"grant_type": "client_credentials", "scope": "partner:read"}).get_json()["access_token"]
    assert _reason(http.get("/api/users/x"), 401) == "token_missing"
    assert _reason(http.get("/api/users/x", headers={"Authorization": "Bearer nope"}), 401) == "token_invalid"
    assert _reason(http.get("/api/users/x", headers={"Authorization": f"Bearer {token}"}), 403) == "no_contract"
    assert _reason(http.get("/api/nothing-here"), 404) == "not_found"
    document = http.get("/api/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")


def test_cli_sets_a_contract_and_shows_the_lookup_salt(app, factories):
    import json

    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:read")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["clients", "set-contract", "--client-id", client.client_id, "--read",
                                 "name,nickname,picture,addresses,phone_number", "--write", "nickname,addresses,attributes.*",
                                 "--subscribe", "--token-exchange", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["write"] == ["addresses", "attributes.*", "nickname"] and data["subscribe"] is True
    assert len(data["lookup_salt"]) == 32 and TOKEN_EXCHANGE in data["grant_types"]
    bad = runner.invoke(args=["clients", "set-contract", "--client-id", client.client_id, "--write", "phone_number"])
    assert bad.exit_code != 0 and "cannot be in a write contract" in bad.output
