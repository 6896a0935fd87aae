"""Subject mapping API: a client asks what became of a sub it holds (after merges, closures)."""

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty, authorize, code_from


def _sub(app, client, account):
    browser = Browser(app.test_client(), ISSUER)
    rp = RelyingParty.for_client(browser.http, ISSUER, client)
    request, response = authorize(browser, rp, account)
    tokens = rp.exchange(code_from(response, request), request).get_json()
    return rp.validate_id_token(tokens["id_token"], nonce=request.nonce)["sub"]


def _partner_token(http, client, scope="partner:lookup"):
    rp = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    return rp.token_request({"grant_type": "client_credentials", "scope": scope}).get_json()["access_token"]


def test_subject_status_after_merges(app, factories, http):
    tenant = factories.tenant()
    site = factories.client(redirect_uri="https://site.example.com/cb", tenant=tenant, trusted=True,
                            grant_types=["authorization_code", "client_credentials"],
                            scope="openid profile partner:lookup")
    a, b, c = factories.account(), factories.account(), factories.account()
    sub_a, sub_b, sub_c = (_sub(app, site, x) for x in (a, b, c))
    token = _partner_token(http, site)
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(f"/api/subjects/{sub_a}", headers=headers).get_json() == {"sub": sub_a, "status": "active", "current_sub": sub_a}

    with app.app_context():
        from app.merging.run import merge_accounts

        merge_accounts(b.id, a.id, origin="operator")
        merge_accounts(c.id, b.id, origin="operator")
    body = http.get(f"/api/subjects/{sub_a}", headers=headers).get_json()
    assert body == {"sub": sub_a, "status": "merged", "current_sub": sub_c}

    missing = http.get("/api/subjects/nope", headers=headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_subject_api_needs_a_token_with_the_scope(app, factories, http):
    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="partner:read partner:lookup")
    assert http.get("/api/subjects/x").status_code == 401
    assert http.get("/api/subjects/x", headers={"Authorization": "Bearer nope"}).status_code == 401
    token = _partner_token(http, client, scope="partner:read")
    response = http.get("/api/subjects/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and response.get_json()["title"] == "Insufficient scope"
