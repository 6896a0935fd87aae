"""/token, /revoke and /introspect bound FAILED client authentications (per client address and
per claimed client_id), not a site's successful traffic: with the shipped defaults, thousands of
good requests from one backend are never refused."""

from __future__ import annotations

from tests.conftest import ISSUER
from tests.rp import RelyingParty


def _backend(factories, http, address: str = "10.0.0.5"):
    client = factories.client(grant_types=["client_credentials"], redirect_uris=[], scope="introspection")
    http.environ_base["REMOTE_ADDR"] = address
    return client, RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)


def test_two_thousand_good_token_requests_from_one_address_are_never_refused(app, budgets, factories, http):
    budgets(defaults=True)
    client, backend = _backend(factories, http)
    statuses = {}
    token = None
    for n in range(2000):
        if n % 2 == 0:
            response = backend.token_request({"grant_type": "client_credentials", "scope": "introspection"})
            token = response.get_json().get("access_token", token)
        else:  # a resource server introspecting: the same endpoint family, the same address
            response = http.post("/introspect", data={"token": token}, auth=(client.client_id, client.client_secret))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert statuses == {200: 2000}


def test_failed_client_authentications_are_bounded_per_address(app, budgets, factories, http):
    budgets(defaults=True)  # TESSERA_CLIENT_AUTH_BUDGET_ADDRESS: 20 per minute
    client, _ = _backend(factories, http, "10.0.0.6")
    guesser = RelyingParty(http, ISSUER, client.client_id, "not-the-secret", None)
    statuses = [guesser.token_request({"grant_type": "client_credentials"}).status_code for _ in range(22)]
    assert statuses == [401] * 20 + [429] * 2
    refused = http.post("/revoke", data={"token": "x"}, auth=(client.client_id, "still-not-it"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"] == "invalid_request"
    # The client's own backend, at its own address, is not affected.
    http.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    good = RelyingParty(http, ISSUER, client.client_id, client.client_secret, None)
    assert good.token_request({"grant_type": "client_credentials"}).status_code == 200


def test_failed_client_authentications_are_bounded_per_client_across_addresses(app, budgets, factories, http):
    budgets(TESSERA_CLIENT_AUTH_BUDGET_CLIENT="5 per minute")
    client, _ = _backend(factories, http)
    statuses = []
    for n in range(6):  # a distributed guess: each address tries once
        http.environ_base["REMOTE_ADDR"] = f"10.1.0.{n}"
        response = http.post("/introspect", data={"token": "x"}, auth=(client.client_id, f"guess-{n}"))
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    # A client_id nobody registered is bounded the same way (nothing tells it apart).
    for n in range(6):
        http.environ_base["REMOTE_ADDR"] = f"10.2.0.{n}"
        statuses.append(http.post("/token", data={"grant_type": "client_credentials"},
                                  auth=("no-such-client", "guess")).status_code)
    assert statuses[6:] == [401] * 5 + [429]
