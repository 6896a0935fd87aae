"""Register the demo partner sites with the hub (idempotent).

``python -m examples.demo_setup`` runs inside the hub's app context (the same ``TESSERA_*``
environment as ``tessera``): it creates each site's tenant and client when they are missing and
brings an existing client's URIs up to date (the sites are ours: their ports may change).

``--sites-json`` replaces the default two sites (the e2e tests use it for their free ports)::

    [{"client_id": "site-a", "client_secret": "site-a-szsKWXh69WExHraRLLZjJFnVVI5VM0gt", "name": "Site A",
      "base_url": "http://127.0.0.1:5001", "tenant": "north", "tenant_name": "North Co",
      "color": "#1f6f43", "login_chain": ["site-c"]}]

Every site gets its ``/events`` endpoint registered (RFC 8935 push of the hub's "account merged"
Security Event Tokens; ``http://`` is accepted on loopback hosts, and the hub and its worker run
with ``TESSERA_ALLOW_PRIVATE_OUTBOUND=1`` so they may push to them).

``login_chain`` (optional) goes into the site's *tenant* policy: partner clients the hub logs in
automatically right after a login at one of that tenant's sites.

The shared address book (``"address_book": false`` in a site's spec leaves it out): the site's
client gets the ``client_credentials`` grant and the scopes ``partner:read partner:write`` (its
server calls the hub's partner data API with a token of its own, ``client_secret_basic``), and a
data contract that reads and writes ``addresses`` with ``--subscribe`` (claims-changed SETs pushed
to its ``/events``) — what ``tessera clients set-contract --client-id C --read addresses --write
addresses --subscribe`` does; claims an operator added to an existing contract are kept. The sites
are first-party (``trusted``): the tenant's agreement stands for the person's, no ``partner``
consent is asked.
"""

from __future__ import annotations

import argparse
import json

#: What a site's client needs for the shared address book.
PARTNER_GRANT = "client_credentials"
PARTNER_SCOPES = ("partner:read", "partner:write")
ADDRESS_CLAIM = "addresses"

DEFAULT_SITES = [
    {"client_id": "site-a", "client_secret": "site-a-szsKWXh69WExHraRLLZjJFnVVI5VM0gt", "name": "Site A",
     "base_url": "http://127.0.0.1:5001", "tenant": "north", "tenant_name": "North Trading Co.",
     "color": "#1f6f43"},
    {"client_id": "site-b", "client_secret": "site-b-x0yFkfpnyVEFNT_qBo-XowoKnn91Y2JE", "name": "Site B",
     "base_url": "http://localhost:5002", "tenant": "south", "tenant_name": "South Logistics Ltd.",
     "color": "#8a2f5d"},
]


def site_uris(base_url: str) -> dict:
    base = base_url.rstrip("/")
    return {
        "redirect_uris": [f"{base}/callback"],
        "post_logout_redirect_uris": [f"{base}/"],
        "frontchannel_logout_uri": f"{base}/frontchannel-logout",
        "backchannel_logout_uri": f"{base}/backchannel-logout",
        "initiate_login_uri": f"{base}/initiate-login",
        # RFC 8935 push: the hub's "account merged" Security Event Tokens
        "events_endpoint": f"{base}/events",
    }


def _with(values, extra) -> list[str]:
    """``values`` with ``extra`` appended (order kept, no duplicates)."""
    return list(dict.fromkeys([*(values or []), *extra]))


def setup_address_book(client_id: str) -> str | None:
    """Grant, scopes and contract of the shared address book (idempotent); a line when changed."""
    from app.extensions import db
    from app.oidc.clients import load_client_row
    from app.partners.contracts import contract_for, set_contract

    client = load_client_row(client_id)
    changed = []
    grants = _with(client.grant_types, [PARTNER_GRANT])
    if grants != list(client.grant_types or []):
        client.grant_types, changed = grants, changed + ["grant client_credentials"]
    scope = " ".join(_with((client.scope or "").split(), PARTNER_SCOPES))
    if scope != client.scope:
        client.scope, changed = scope, changed + ["scopes partner:read partner:write"]
    db.session.commit()  # every hub process drops its cached snapshot of the client (app/caches.py)
    contract = contract_for(client)
    if contract is None or not (contract.can_read(ADDRESS_CLAIM) and contract.can_write(ADDRESS_CLAIM)
                                and contract.subscribe):
        read = _with(sorted(contract.read) if contract else [], [ADDRESS_CLAIM])
        write = _with(sorted(contract.write) if contract else [], [ADDRESS_CLAIM])
        set_contract(client_id, read=read, write=write, subscribe=True, actor="operator:demo")
        changed.append(f"contract read {','.join(read)} write {','.join(write)} subscribe")
    return f"  {client_id}: " + "; ".join(changed) if changed else None


def setup_sites(sites: list[dict]) -> list[str]:
    """Create or update tenants and clients; returns a line of text per site."""
    from app.extensions import db
    from app.oidc.clients import create_client
    from app.oidc.models import Client
    from app.oidc.keys import ensure_keys
    from app.security import client_secret_hash
    from app.tenants.models import Tenant
    from app.tenants.service import create_tenant

    ensure_keys()
    lines = []
    for spec in sites:
        tenant = db.session.scalar(db.select(Tenant).filter_by(slug=spec["tenant"]))
        branding = {"primary_color": spec.get("color", "#2f5d8a")}
        if tenant is None:
            tenant = create_tenant(spec["tenant"], spec.get("tenant_name") or spec["tenant"], branding=branding)
        if "login_chain" in spec:
            tenant.policy = dict(tenant.policy or {}, login_chain=list(spec["login_chain"]))
            db.session.commit()
        uris = site_uris(spec["base_url"])
        # the row itself: get_client() hands out a frozen snapshot, for reading
        client = db.session.scalar(db.select(Client).filter_by(client_id=spec["client_id"]))
        if client is None:
            create_client(tenant=spec["tenant"], name=spec["name"], trusted=True, client_id=spec["client_id"],
                          client_secret=spec["client_secret"], **uris)
            lines.append(f"created {spec['client_id']} ({spec['name']}, tenant {spec['tenant']})")
        else:
            changed = False
            for attr, value in uris.items():
                if getattr(client, attr) != value:
                    setattr(client, attr, value)
                    changed = True
            if not client.trusted:
                client.trusted, changed = True, True
            if not client.check_client_secret(spec["client_secret"]):  # seeded with an older demo secret
                client.secret_hash, changed = client_secret_hash(spec["client_secret"]), True
            db.session.commit()
            lines.append(f"{'updated' if changed else 'kept'} {spec['client_id']} ({spec['name']})")
        if spec.get("address_book", True):
            line = setup_address_book(spec["client_id"])
            if line:
                lines.append(line)
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.demo_setup")
    parser.add_argument("--sites-json", help="JSON list of sites (default: Site A and Site B).")
    args = parser.parse_args(argv)
    sites = json.loads(args.sites_json) if args.sites_json else DEFAULT_SITES

    from app.factory import create_app

    app = create_app()
    with app.app_context():
        for line in setup_sites(sites):
            print(line)


if __name__ == "__main__":
    main()
