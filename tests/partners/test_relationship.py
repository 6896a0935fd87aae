"""The relationship rule: a partner — first-party or not — reaches only people related to it or
its tenant (a subject at one of the tenant's sites, a consent to one, tenant-scoped data); for
everyone else every answer is byte for byte the answer about nobody."""

from __future__ import annotations

import hashlib

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from

#: Headers that count requests rather than describe the answer (the client's rate-limit budget).
PER_REQUEST_HEADERS = {"Date", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID"}


def _same_answer(hidden, unknown) -> None:
    """Status, headers and body bytes are the same: nothing tells the two cases apart."""
    assert hidden.status_code == unknown.status_code
    assert {k: v for k, v in hidden.headers.items() if k not in PER_REQUEST_HEADERS} == \
        {k: v for k, v in unknown.headers.items() if k not in PER_REQUEST_HEADERS}
    assert hidden.get_data() == unknown.get_data()


def _log_in_at(app, factories, person, tenant: str, host: str, subject_type: str = "pairwise") -> str:
    """The person logs in at a site (a relying party) of ``tenant`` through the browser and
    approves it; the sub that site got."""
    site = factories.client(redirect_uri=f"https://{host}/cb", tenant=tenant, subject_type=subject_type)
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty(browser.http, ISSUER, site.client_id, site.client_secret, site.redirect_uri)
    request, response = authorize(browser, rp, person, scope="openid")
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]


def _count(app, model, **filters) -> int:
    from app.extensions import db

    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model).filter_by(**filters))


def test_a_trusted_partner_of_one_tenant_reaches_nobody_who_only_used_another_tenants_sites(
        app, http, factories, partners):
    """The issue's attack: acme's first-party partner looks up, reads, writes and registers a
    person who only ever used tenant beta's site. Every answer is the answer about nobody, and
    nothing is written or handed out."""
    from app.accounts.models import Account, AuditEvent
    from app.accounts.profile import update_profile
    from app.extensions import db
    from app.oidc.models import Consent, SubjectMapping
    from app.tenants.service import set_policy

    acme, beta = factories.tenant("acme"), factories.tenant("beta")
    with app.app_context():
        set_policy(acme, allow_partner_registration=True)
    victim = factories.account(phone="+8613700137001", name="Beta Customer", nickname="beta-only",
                               email="beta.customer@example.com")
    # beta's site hands out the hub-wide public subject; acme's partner speaks public subjects too
    public_sub = _log_in_at(app, factories, victim, beta, "shop.beta.example", subject_type="public")
    partner = partners.make(tenant=acme, trusted=True, read="name,nickname,phone_number,email", write="nickname,addresses",
                            host="partner.acme.example")
    public_partner = partners.make(tenant=acme, trusted=True, read="name,nickname,phone_number,email",
                                   write="nickname,addresses", host="app.acme.example", subject_type="public")
    headers, public_headers = partner.headers(), public_partner.headers()
    unregistered = "+8613700137999"

    # lookup by phone and by salted hash
    for who, hdrs, salt in ((partner, headers, partner.salt), (public_partner, public_headers, public_partner.salt)):
        _same_answer(http.post("/api/users:lookup", json={"phone": victim.phone}, headers=hdrs),
                     http.post("/api/users:lookup", json={"phone": unregistered}, headers=hdrs))
        hashed = {p: hashlib.sha256((salt + p).encode()).hexdigest() for p in (victim.phone, unregistered)}
        _same_answer(http.post("/api/users:lookup", json={"phone_hash": hashed[victim.phone]}, headers=hdrs),
                     http.post("/api/users:lookup", json={"phone_hash": hashed[unregistered]}, headers=hdrs))
    assert http.post("/api/users:lookup", json={"phone": victim.phone}, headers=headers).status_code == 404

    # single read, addresses, write and subject status by the public sub beta's site handed out
    unknown_sub = "x" * len(public_sub)
    _same_answer(http.get(f"/api/users/{public_sub}", headers=public_headers),
                 http.get(f"/api/users/{unknown_sub}", headers=public_headers))
    _same_answer(http.get(f"/api/users/{public_sub}/addresses", headers=public_headers),
                 http.get(f"/api/users/{unknown_sub}/addresses", headers=public_headers))
    _same_answer(http.get(f"/api/subjects/{public_sub}", headers=public_headers),
                 http.get(f"/api/subjects/{unknown_sub}", headers=public_headers))
    for sub in (public_sub, unknown_sub):
        assert http.patch(f"/api/users/{sub}", json={"nickname": "pwned"},
                          headers={**public_headers, "If-Match": '"any"'}).status_code == 404
        assert http.post(f"/api/users/{sub}/addresses", json={"locality": "Nowhere"},
                         headers=public_headers).status_code == 404
    _same_answer(http.patch(f"/api/users/{public_sub}", json={"nickname": "pwned"},
                            headers={**public_headers, "If-Match": '"any"'}),
                 http.patch(f"/api/users/{unknown_sub}", json={"nickname": "pwned"},
                            headers={**public_headers, "If-Match": '"any"'}))
    batch = http.post("/api/users:batch-read", json={"subs": [public_sub, unknown_sub]}, headers=public_headers)
    assert batch.get_json() == {"users": [], "not_found": [public_sub, unknown_sub]}

    # the change feed does not carry the person's changes either
    with app.app_context():
        update_profile(victim.id, nickname="changed-at-beta")
    assert http.get("/api/changes", headers=public_headers).get_json()["changes"] == []

    # register-on-write: one 409 whoever holds the number, and the holder is never attached to
    customer = factories.account(phone="+8613700137002")
    _log_in_at(app, factories, customer, acme, "shop.acme.example")  # acme's own customer
    taken_by_stranger = http.post("/api/users", json={"phone": victim.phone}, headers=headers)
    taken_by_customer = http.post("/api/users", json={"phone": customer.phone}, headers=headers)
    assert taken_by_stranger.status_code == 409
    _same_answer(taken_by_stranger, taken_by_customer)

    # nothing was written or handed out
    with app.app_context():
        account = db.session.get(Account, victim.id)
        assert (account.name, account.nickname) == ("Beta Customer", "changed-at-beta")
        assert db.session.scalar(db.select(db.func.count()).select_from(Consent).filter_by(account_id=victim.id)) == 1
        assert {m.sector for m in db.session.scalars(db.select(SubjectMapping).filter_by(account_id=victim.id))} == {":public"}
        partner_events = db.session.scalars(db.select(AuditEvent).where(
            AuditEvent.account_id == victim.id, AuditEvent.kind.like("partner.%"))).all()
        assert partner_events == []


def test_a_partner_reaches_people_who_used_any_site_of_its_tenant(app, http, factories, partners):
    """Related through another site of the tenant (not the partner's own sector), or through the
    tenant's own data (a username in its namespace): a first-party partner reaches them; a
    partner that needs consent still needs it."""
    from app.accounts.binding import add_username
    from app.extensions import db
    from app.tenants.models import Tenant

    acme, beta = factories.tenant("acme"), factories.tenant("beta")
    first_party = partners.make(tenant=acme, trusted=True, read="nickname", write="nickname", host="crm.acme.example")
    needs_consent = partners.make(tenant=acme, read="nickname", host="ads.acme.example")
    shopper = factories.account(phone="+8613700137101", nickname="shopper")
    _log_in_at(app, factories, shopper, acme, "shop.acme.example")  # acme's shop, another sector
    member = factories.account(phone="+8613700137102", nickname="member")
    with app.app_context():
        add_username(member.id, db.session.scalar(db.select(Tenant.id).filter_by(slug=acme)), "member102")
    stranger = factories.account(phone="+8613700137103", nickname="stranger")
    with app.app_context():  # beta's username says nothing about acme
        add_username(stranger.id, db.session.scalar(db.select(Tenant.id).filter_by(slug=beta)), "stranger103")
    headers = first_party.headers()

    for person, nickname in ((shopper, "shopper"), (member, "member")):
        found = http.post("/api/users:lookup", json={"phone": person.phone}, headers=headers)
        assert found.status_code == 200, found.get_json()
        digest = hashlib.sha256((first_party.salt + person.phone).encode()).hexdigest()
        assert http.post("/api/users:lookup", json={"phone_hash": digest}, headers=headers).get_json() == found.get_json()
        read = http.get(f"/api/users/{found.get_json()['sub']}", headers=headers)
        assert read.get_json()["claims"] == {"nickname": nickname}
    assert _reason(http.post("/api/users:lookup", json={"phone": stranger.phone}, headers=headers)) == "user_not_found"
    # a partner that needs the person's consent: related is not enough
    assert _reason(http.post("/api/users:lookup", json={"phone": shopper.phone},
                             headers=needs_consent.headers())) == "user_not_found"


def _reason(response) -> str:
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    return response.get_json()["reason"]


def test_batch_read_answers_unrelated_people_like_unknown_subjects(app, http, factories, partners):
    from app.accounts.models import AuditEvent

    acme, beta = factories.tenant("acme"), factories.tenant("beta")
    partner = partners.make(tenant=acme, trusted=True, read="nickname", subject_type="public", host="app.acme.example")
    related, unrelated = factories.account(nickname="acme's"), factories.account(nickname="beta's")
    related_sub = _log_in_at(app, factories, related, acme, "shop.acme.example", subject_type="public")
    unrelated_sub = _log_in_at(app, factories, unrelated, beta, "shop.beta.example", subject_type="public")
    headers = partner.headers()

    body = http.post("/api/users:batch-read", json={"subs": ["unknown", unrelated_sub, related_sub]},
                     headers=headers).get_json()
    assert [(u["requested_sub"], u["claims"]) for u in body["users"]] == [(related_sub, {"nickname": "acme's"})]
    assert body["not_found"] == ["unknown", unrelated_sub]
    only_strangers = http.post("/api/users:batch-read", json={"subs": [unrelated_sub]}, headers=headers)
    only_unknown = http.post("/api/users:batch-read", json={"subs": ["u" * len(unrelated_sub)]}, headers=headers)
    assert only_strangers.get_json()["users"] == only_unknown.get_json()["users"] == []
    assert only_strangers.status_code == only_unknown.status_code == 200
    assert _count(app, AuditEvent, kind="partner.read", account_id=unrelated.id) == 0
    assert _count(app, AuditEvent, kind="partner.read", account_id=related.id) == 1
