"""Seed the benchmark database through the app's own services, in one process.

Run with the TESSERA_* environment of the benchmark hub (bench/run.py does that). Prints a JSON
object with what the load driver needs (client ids and secrets, user logins and the password).

Every account gets the same argon2id hash, computed once with the app's own parameters: the login
flow still verifies a real OWASP-parameter hash per request, but seeding 200 users does not cost
200 hashes.
"""

from __future__ import annotations

import json
import sys

from app.factory import create_app

TENANT = "bench"
PASSWORD = "bench-password-123"
WEB = {"client_id": "bench-web", "client_secret": "bench-web-nJocCn1uwMKVXdQo-OfbXzgGDbEtUbZX",
       "redirect_uri": "http://127.0.0.1:5001/callback"}
APP = {"client_id": "bench-app", "redirect_uri": "http://127.0.0.1/callback"}
PARTNER = {"client_id": "bench-partner", "client_secret": "bench-partner-0hWXZtcEsUTCJbFXn3LELcglVkhUSBYp"}
#: A first-party partner server of the tenant with a read contract (scenario g: batch read).
READER = {"client_id": "bench-reader", "client_secret": "bench-reader-xO6coPX1pHBEukah4hKb01cteUl0i_-M"}
READER_CLAIMS = ["name", "nickname", "locale", "phone_number", "phone_number_verified", "email", "email_verified",
                 "addresses"]


def phone_of(i: int) -> str:
    return f"+86138{i:08d}"  # China Mobile numbers: valid for libphonenumber, E.164 already


def main(n_users: int) -> dict:
    app = create_app()
    with app.app_context():
        from app.accounts.passwords import hash_password
        from app.accounts.profile import create_account
        from app.extensions import db
        from app.oidc.clients import create_client, get_client
        from app.oidc.subjects import subject_for
        from app.partners.contracts import set_contract
        from app.oidc.keys import ensure_keys
        from app.tenants.service import create_tenant

        ensure_keys()
        create_tenant(TENANT, "Benchmark tenant")
        create_client(tenant=TENANT, name="Bench web (confidential, trusted)", client_id=WEB["client_id"],
                      client_secret=WEB["client_secret"], redirect_uris=[WEB["redirect_uri"]], trusted=True)
        create_client(tenant=TENANT, name="Bench app (public, PKCE)", client_id=APP["client_id"], public=True,
                      redirect_uris=[APP["redirect_uri"]])
        create_client(tenant=TENANT, name="Bench partner (client credentials)", client_id=PARTNER["client_id"],
                      client_secret=PARTNER["client_secret"], redirect_uris=[],
                      grant_types=["client_credentials"], scope="introspection")
        create_client(tenant=TENANT, name="Bench reader (partner API, first-party)", client_id=READER["client_id"],
                      client_secret=READER["client_secret"], redirect_uris=[], trusted=True,
                      grant_types=["client_credentials"], scope="partner:read")
        set_contract(READER["client_id"], read=READER_CLAIMS, write=[], subscribe=False, actor="operator:bench")
        shared_hash = hash_password(PASSWORD)
        logins, accounts = [], []
        for i in range(n_users):
            phone = phone_of(i)
            account = create_account(phone=phone, email=f"user{i}@bench.example", name=f"Bench User {i}",
                                     nickname=f"u{i}", locale="en-US")
            account.password_hash = shared_hash
            logins.append(phone)
            accounts.append(account)
        db.session.commit()
        reader = get_client(READER["client_id"])
        reader_subs = [subject_for(reader, account.id) for account in accounts]
        db.session.commit()
        # Planner statistics, as a running hub has them (autovacuum would get there later): without
        # them PostgreSQL plans the freshly filled tables as empty (nested loops over seq scans).
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE")
    return {"tenant": TENANT, "password": PASSWORD, "web": WEB, "app": APP, "partner": PARTNER,
            "reader": READER, "reader_subs": reader_subs, "logins": logins}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
