"""A merge is a claims change of the survivor: the partners subscribed to it are told what the
merge filled in (a profile claim, the address book, an email the moved identities brought)."""

import json

from app.extensions import db
from tests.partners.conftest import partners  # noqa: F401  (fixture)


def test_a_merge_notes_the_survivors_changed_claims(app, http, factories, partners, receiver):  # noqa: F811
    from app.worker import run_once
    from app.merging.cli import merges_group
    from app.partners.models import AccountAddress

    subscriber = partners.make(read="nickname,addresses,email,email_verified", subscribe=True,
                               events_endpoint=f"{receiver.url}/events")
    survivor = factories.account(name="Ada")
    absorbed = factories.account(nickname="countess", email="lovelace@example.org")
    sub = partners.share(subscriber, survivor.id)
    with app.app_context():
        db.session.add(AccountAddress(uid="addr-absorbed", account_id=absorbed.id, value={"locality": "Suzhou"}, source="self"))
        db.session.commit()

    # An operator merges them (the real CLI command).
    result = app.test_cli_runner().invoke(merges_group, ["create", "--survivor", str(survivor.id), "--absorbed",
                                                         str(absorbed.id), "--reason", "same person", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "completed"
    with app.app_context():
        while run_once():
            pass

    # One claims-changed SET to the subscriber, for the survivor's sub, naming every changed claim.
    changed = [r["claims"]["events"]["urn:tessera:event:claims-changed"] for r in receiver.requests
               if "urn:tessera:event:claims-changed" in r["claims"].get("events", {})]
    assert changed == [{"subject": {"format": "iss_sub", "iss": "http://localhost", "sub": sub},
                        "claims": ["addresses", "email", "email_verified", "nickname"]}]
    # The change log (polling) has it too, and the provenance says a merge wrote the values.
    headers = subscriber.headers()
    changes = http.get("/api/changes", headers=headers).get_json()["changes"]
    assert [(c["sub"], c["claims"]) for c in changes] == [(sub, ["addresses", "email", "email_verified", "nickname"])]
    body = http.get(f"/api/users/{sub}", headers=headers).get_json()
    assert body["claims"]["nickname"] == "countess" and body["provenance"]["nickname"]["source"] == "merge"
