"""The demo relying party's Security Event Token receiver (``POST /events``, RFC 8935 push), its
business-data merge and its shared address book, without a browser or a hub: the hub's discovery
document and JWKS are served from memory, the SETs are signed with a key of this test, shaped like
the hub's (``app.merging.steps.merged_event_token``, ``app.partners.changes.claims_changed_token``),
and the partner data API is a fake in memory with the hub's ETag rules."""

from __future__ import annotations

import time
import uuid

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from examples.rp_site import CLAIMS_CHANGED_EVENT, MERGED_EVENT, LocalSession, SiteConfig, create_app
from examples.rp_site.addresses import PartnerApiError
from examples.rp_site.business import level_for

ISSUER = "http://hub.test"
CLIENT_ID = "site-x"
SURVIVOR, ABSORBED = "sub-survivor", "sub-absorbed"


@pytest.fixture(scope="module")
def key():
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


def make_site(key, *, debug_endpoints=True):
    config = SiteConfig(name="Site X", issuer=ISSUER, client_id=CLIENT_ID, client_secret="s",
                        base_url="http://127.0.0.1:5999", secret_key="unit-test-secret-key-0123456789",
                        debug_endpoints=debug_endpoints)
    app = create_app(config)
    hub = app.extensions["authlib.integrations.flask_client"].hub
    hub.server_metadata.update({
        "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize", "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks", "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "jwks": KeySet([key]).as_dict(private=False), "_loaded_at": time.time(),
    })
    return app


@pytest.fixture
def site(key):
    app = make_site(key)
    http = app.test_client()
    http.post("/debug/seed", json={"sub": SURVIVOR, "coins": 100, "points": 80, "favourites": ["tea", "lamp"]})
    http.post("/debug/seed", json={"sub": ABSORBED, "coins": 50, "points": 60, "favourites": ["lamp", "kite"]})
    return app


def merged_set(key, *, survivor=SURVIVOR, absorbed=ABSORBED, header=None, merge_id=7, **overrides) -> str:
    claims = {
        "iss": ISSUER, "iat": int(time.time()), "jti": uuid.uuid4().hex, "aud": CLIENT_ID, "txn": f"merge-{merge_id}",
        "events": {MERGED_EVENT: {
            "subject": {"format": "iss_sub", "iss": ISSUER, "sub": survivor},
            "absorbed_subject": {"format": "iss_sub", "iss": ISSUER, "sub": absorbed},
        }},
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(header or {"alg": "RS256", "kid": "k1", "typ": "secevent+jwt"}, claims, key)


def push(app, token, content_type="application/secevent+jwt"):
    return app.test_client().post("/events", data=token, headers={"Content-Type": content_type})


def business(app, sub):
    return app.test_client().get(f"/debug/business?sub={sub}").get_json()


def unchanged(app):
    assert business(app, SURVIVOR)["coins"] == 100
    assert business(app, ABSORBED)["coins"] == 50 and business(app, ABSORBED)["exists"]


def test_levels():
    assert [level_for(p) for p in (0, 99, 100, 299, 300, 5000)] == \
        ["bronze", "bronze", "silver", "silver", "gold", "gold"]


def test_merged_event_moves_the_absorbed_data_into_the_survivor(site, key):
    response = push(site, merged_set(key))
    assert response.status_code == 202 and response.data == b""
    survivor = business(site, SURVIVOR)
    assert survivor["coins"] == 150
    assert [(line["amount"], line["label"]) for line in survivor["ledger"]] == \
        [(100, "opening balance"), (50, "account merge credit")]
    assert survivor["points"] == 140 and survivor["level"] == "silver"
    assert survivor["favourites"] == ["kite", "lamp", "tea"]
    absorbed = business(site, ABSORBED)
    assert not absorbed["exists"] and absorbed["coins"] == 0 and absorbed["merged_into"] == SURVIVOR


def test_merged_event_drops_the_absorbed_subs_sessions_only(site, key):
    store = site.extensions["rp_store"]
    for sub in (SURVIVOR, ABSORBED, ABSORBED):
        store.put(LocalSession(key=uuid.uuid4().hex, sub=sub, sid=uuid.uuid4().hex, id_token="x",
                               claims={"sub": sub}, session_state=None, via="login"))
    assert push(site, merged_set(key)).status_code == 202
    assert [s["sub"] for s in site.test_client().get("/debug/sessions").get_json()["sessions"]] == [SURVIVOR]


def test_redelivered_jti_does_not_credit_twice(site, key):
    token = merged_set(key)
    assert push(site, token).status_code == 202
    assert push(site, token).status_code == 202  # acknowledged, so the hub stops retrying ...
    survivor = business(site, SURVIVOR)  # ... but nothing happens twice
    assert survivor["coins"] == 150 and survivor["points"] == 140
    assert [line["label"] for line in survivor["ledger"]].count("account merge credit") == 1
    events = site.test_client().get("/debug/business").get_json()["events"]
    assert [e.get("duplicate", False) for e in events] == [False, True]


def test_the_same_merge_under_a_new_jti_changes_nothing(site, key):
    assert push(site, merged_set(key)).status_code == 202
    assert push(site, merged_set(key)).status_code == 202
    assert business(site, SURVIVOR)["coins"] == 150


def test_chained_merges_resolve_to_the_last_survivor(site, key):
    site.test_client().post("/debug/seed", json={"sub": "sub-third", "coins": 5, "points": 300})
    assert push(site, merged_set(key)).status_code == 202                         # absorbed → survivor
    assert push(site, merged_set(key, survivor="sub-third", absorbed=SURVIVOR)).status_code == 202
    third = business(site, "sub-third")
    assert third["coins"] == 155 and third["points"] == 440 and third["level"] == "gold"
    assert business(site, ABSORBED)["resolves_to"] == "sub-third"
    # a late seed addressed to an absorbed sub lands on the survivor
    site.test_client().post("/debug/seed", json={"sub": ABSORBED, "coins": 1})
    assert business(site, "sub-third")["coins"] == 156 and not business(site, ABSORBED)["exists"]


def test_signature_by_another_key_is_refused(site, key):
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    response = push(site, merged_set(other))
    assert response.status_code == 400
    assert response.get_json()["err"] == "invalid_key" and response.get_json()["description"]
    unchanged(site)


def test_wrong_audience_is_refused(site, key):
    response = push(site, merged_set(key, aud="another-site"))
    assert response.status_code == 400 and response.get_json()["err"] == "invalid_audience"
    unchanged(site)


def test_aud_may_be_a_list(site, key):
    assert push(site, merged_set(key, aud=[CLIENT_ID, "other"])).status_code == 202


@pytest.mark.parametrize("case", ["iss", "typ", "content-type", "unsigned", "empty", "no-jti", "no-iat", "no-events",
                                  "subject-of-another-issuer", "self-merge", "logout-token"])
def test_malformed_sets_are_refused(site, key, case):
    content_type = "application/secevent+jwt"
    if case == "iss":
        token = merged_set(key, iss="http://evil.test")
    elif case == "typ":
        token = merged_set(key, header={"alg": "RS256", "kid": "k1", "typ": "JWT"})
    elif case == "content-type":
        token, content_type = merged_set(key), "application/jwt"
    elif case == "unsigned":
        token = "eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.eyJpc3MiOiJodHRwOi8vaHViLnRlc3QifQ."
    elif case == "empty":
        token = ""
    elif case == "no-jti":
        token = merged_set(key, jti=None)
    elif case == "no-iat":
        token = merged_set(key, iat=None)
    elif case == "no-events":
        token = merged_set(key, events=None)
    elif case == "subject-of-another-issuer":
        token = merged_set(key, events={MERGED_EVENT: {
            "subject": {"format": "iss_sub", "iss": "http://evil.test", "sub": SURVIVOR},
            "absorbed_subject": {"format": "iss_sub", "iss": ISSUER, "sub": ABSORBED}}})
    elif case == "self-merge":
        token = merged_set(key, survivor=ABSORBED)
    else:
        token = merged_set(key, events={"http://schemas.openid.net/event/backchannel-logout": {}})
    response = push(site, token, content_type)
    assert response.status_code == 400, case
    body = response.get_json()
    assert body["err"] in ("invalid_request", "invalid_key", "invalid_issuer", "invalid_audience"), body
    assert body["description"]
    unchanged(site)


def test_unknown_events_are_acknowledged_and_ignored(site, key):
    token = merged_set(key, events={"urn:example:event:other": {"x": 1}})
    assert push(site, token).status_code == 202
    unchanged(site)


def test_debug_endpoints_only_when_enabled(key):
    app = make_site(key, debug_endpoints=False)
    http = app.test_client()
    assert http.get("/debug/business?sub=x").status_code == 404
    assert http.post("/debug/seed", json={"sub": "x", "coins": 1}).status_code == 404
    assert http.post("/events", data="x", headers={"Content-Type": "application/secevent+jwt"}).status_code == 400


def test_home_page_buttons_need_a_session_and_the_form_token(key):
    app = make_site(key)
    store = app.extensions["rp_store"]
    local = LocalSession(key="k" * 43, sub=SURVIVOR, sid="s", id_token="x", claims={"sub": SURVIVOR},
                         session_state=None, via="login")
    store.put(local)
    http = app.test_client()
    http.set_cookie("rp_site_x_session", local.key, domain="localhost")
    assert http.post("/business/earn-coins", data={"csrf": "forged"}).status_code == 400
    page = http.get("/").get_data(as_text=True)
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert http.post("/business/earn-coins", data={"csrf": csrf}).status_code == 303
    assert http.post("/business/earn-points", data={"csrf": csrf}).status_code == 303
    assert http.post("/business/favourite", data={"csrf": csrf, "item": "kite"}).status_code == 303
    data = business(app, SURVIVOR)
    assert data["coins"] == 10 and data["points"] == 40 and data["favourites"] == ["kite"]
    page = http.get("/").get_data(as_text=True)
    assert 'id="coins">10<' in page and "daily check-in" in page


# --- the shared address book -----------------------------------------------------------------------

class FakePartnerApi:
    """The hub's address book resource in memory: per-entry ETags ``"<id>.<version>"``, 412
    ``etag_mismatch`` on a stale ``If-Match``, 404 ``address_not_found``."""

    def __init__(self):
        self.books: dict[str, list[dict]] = {}
        self.reads = 0
        self._next = 0

    def list(self, sub):
        self.reads += 1
        return [dict(e) for e in self.books.get(sub, [])]

    def _stored(self, sub, address_id, etag):
        entry = next((e for e in self.books.get(sub, []) if e["id"] == address_id), None)
        if entry is None:
            raise PartnerApiError(404, "address_not_found")
        if etag != entry["etag"]:
            raise PartnerApiError(412, "etag_mismatch")
        return entry

    def add(self, sub, entry):
        self._next += 1
        created = dict(entry, id=f"a{self._next}", version=1, etag=f'"a{self._next}.1"',
                       provenance={"source": "partner", "client_id": CLIENT_ID})
        self.books.setdefault(sub, []).append(created)
        return dict(created)

    def replace(self, sub, address_id, entry, etag):
        stored = self._stored(sub, address_id, etag)
        version = stored["version"] + 1
        stored.clear()
        stored.update(entry, id=address_id, version=version, etag=f'"{address_id}.{version}"',
                      provenance={"source": "partner", "client_id": CLIENT_ID})
        return dict(stored)

    def delete(self, sub, address_id, etag):
        self._stored(sub, address_id, etag)
        self.books[sub] = [e for e in self.books[sub] if e["id"] != address_id]

    def edit_elsewhere(self, sub, address_id, **values):
        """Another site's write."""
        stored = next(e for e in self.books[sub] if e["id"] == address_id)
        return self.replace(sub, address_id, {**{k: v for k, v in stored.items() if k in ("label", "street_address")},
                                              **values}, stored["etag"])


def claims_set(key, sub=SURVIVOR, claims=("addresses",), **overrides) -> str:
    return merged_set(key, txn="claims-9", events={CLAIMS_CHANGED_EVENT: {
        "subject": {"format": "iss_sub", "iss": ISSUER, "sub": sub}, "claims": list(claims)}}, **overrides)


@pytest.fixture
def book_site(key):
    app = make_site(key)
    fake = FakePartnerApi()
    app.extensions["rp_addresses"].api = fake
    return app, fake


def local_book(app, sub=SURVIVOR):
    return app.test_client().get(f"/debug/addresses?sub={sub}").get_json()


def wait_until(check, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_claims_changed_set_for_addresses_rereads_the_book_once(book_site, key):
    app, fake = book_site
    fake.add(SURVIVOR, {"label": "Home", "street_address": "1 Harbour Road"})
    token = claims_set(key)
    assert push(app, token).status_code == 202
    wait_until(lambda: local_book(app)["entries"])
    book = local_book(app)
    assert [e["label"] for e in book["entries"]] == ["Home"]
    assert [h["how"] for h in book["history"]] == ["event"] and book["history"][0]["txn"] == "claims-9"
    assert push(app, token).status_code == 202  # a redelivery is acknowledged and changes nothing
    time.sleep(0.2)
    assert fake.reads == 1 and len(local_book(app)["history"]) == 1
    events = app.test_client().get("/debug/business").get_json()["events"]
    assert [e.get("duplicate", False) for e in events] == [False, True]
    assert events[0]["events"] == [{"event": CLAIMS_CHANGED_EVENT, "sub": SURVIVOR, "claims": ["addresses"],
                                    "reread": True}]


def test_a_claims_changed_set_without_addresses_rereads_nothing(book_site, key):
    app, fake = book_site
    assert push(app, claims_set(key, claims=["nickname"])).status_code == 202
    time.sleep(0.2)
    assert fake.reads == 0 and local_book(app)["history"] == []


@pytest.mark.parametrize("case", ["subject-of-another-issuer", "no-claims", "claims-not-a-list", "not-an-object"])
def test_malformed_claims_changed_sets_are_refused(book_site, key, case):
    app, fake = book_site
    event = {"subject": {"format": "iss_sub", "iss": ISSUER, "sub": SURVIVOR}, "claims": ["addresses"]}
    if case == "subject-of-another-issuer":
        event["subject"]["iss"] = "http://evil.test"
    elif case == "no-claims":
        event["claims"] = []
    elif case == "claims-not-a-list":
        event["claims"] = "addresses"
    else:
        event = ["addresses"]
    response = push(app, merged_set(key, events={CLAIMS_CHANGED_EVENT: event}))
    assert response.status_code == 400 and response.get_json()["err"] == "invalid_request", case
    time.sleep(0.1)
    assert fake.reads == 0


def logged_in(app, sub=SURVIVOR):
    local = LocalSession(key="k" * 43, sub=sub, sid="s", id_token="x", claims={"sub": sub}, session_state=None,
                         via="login")
    app.extensions["rp_store"].put(local)
    http = app.test_client()
    http.set_cookie("rp_site_x_session", local.key, domain="localhost")
    return http


def form_token(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_address_book_page_writes_with_if_match_and_shows_a_conflict(book_site):
    app, fake = book_site
    assert app.test_client().get("/addresses").status_code == 302  # logged in only
    http = logged_in(app)
    page = http.get("/addresses").get_data(as_text=True)
    assert 'id="no-addresses"' in page
    csrf = form_token(page)
    assert http.post("/addresses", data={"csrf": "forged", "label": "Home"}).status_code == 400
    assert http.post("/addresses", data={"csrf": csrf, "label": "Home", "street_address": "1 Harbour Road"}).status_code == 303
    [entry] = local_book(app)["entries"]
    assert (entry["label"], entry["etag"]) == ("Home", '"a1.1"')
    # the page's form carries the ETag the person saw; another site edits meanwhile
    fake.edit_elsewhere(SURVIVOR, "a1", street_address="2 Harbour Road")
    stale = http.post("/addresses/a1/edit", data={"csrf": csrf, "etag": '"a1.1"', "label": "Stale",
                                                  "street_address": "99 Old Street"})
    assert stale.status_code == 303
    page = http.get("/addresses").get_data(as_text=True)
    assert 'id="address-conflict"' in page and 'data-reason="etag_mismatch"' in page and "99 Old Street" in page
    assert fake.books[SURVIVOR][0]["street_address"] == "2 Harbour Road"  # nothing overwritten
    book = local_book(app)
    assert book["entries"][0]["etag"] == '"a1.2"' and book["conflicts"][0]["status"] == 412
    assert 'id="address-conflict"' not in http.get("/addresses").get_data(as_text=True)  # shown once
    # with the current ETag the edit goes through, then the delete
    assert http.post("/addresses/a1/edit", data={"csrf": csrf, "etag": '"a1.2"', "label": "Office"}).status_code == 303
    assert fake.books[SURVIVOR][0]["label"] == "Office" and local_book(app)["entries"][0]["etag"] == '"a1.3"'
    assert http.post("/addresses/a1/delete", data={"csrf": csrf, "etag": '"a1.2"'}).status_code == 303
    assert fake.books[SURVIVOR] and "was changed elsewhere" in http.get("/addresses").get_data(as_text=True)
    assert http.post("/addresses/a1/delete", data={"csrf": csrf, "etag": '"a1.3"'}).status_code == 303
    assert fake.books[SURVIVOR] == [] and local_book(app)["entries"] == []
    # an entry deleted elsewhere: a 404, shown as such
    fake.add(SURVIVOR, {"label": "Gone"})
    http.post("/addresses/refresh", data={"csrf": csrf})
    fake.books[SURVIVOR] = []
    http.post("/addresses/a2/edit", data={"csrf": csrf, "etag": '"a2.1"', "label": "Gone again"})
    assert 'data-reason="address_not_found"' in http.get("/addresses").get_data(as_text=True)


def test_debug_addresses_only_when_enabled(key):
    assert make_site(key, debug_endpoints=False).test_client().get("/debug/addresses?sub=x").status_code == 404
