"""`tessera tenants delete` through the app's own command line, on the suite's database (SQLite, or
PostgreSQL): an empty tenant goes (audited, its id never reused), one that anything refers to stays
and the refusal names what remains."""

from __future__ import annotations

import json

from app.accounts.models import AuditEvent
from app.accounts.profile import create_account
from app.bulk_import.conflicts import parse_policies
from app.bulk_import.jobs import start_job
from app.bulk_import.run import run_job
from app.extensions import db
from app.tenants.models import Tenant
from app.tenants.service import REFERENCE_NAMES


def _cli(app, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def _tenant(app, slug: str) -> Tenant | None:
    with app.app_context():
        return db.session.scalar(db.select(Tenant).filter_by(slug=slug))


def _refusal(app, slug: str) -> str:
    result = _cli(app, "tenants", "delete", slug, "--yes")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert _tenant(app, slug) is not None
    return result.output


def test_an_empty_tenant_is_deleted_audited_and_its_id_never_comes_back(app, factories):
    factories.tenant("keep")
    factories.tenant("gone", name="Gone Ltd")
    gone_id = _tenant(app, "gone").id
    result = _cli(app, "tenants", "delete", "gone", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == {"id": gone_id, "slug": "gone", "name": "Gone Ltd",
                                                    "branding": {}, "policy": {}}
    assert _tenant(app, "gone") is None and _tenant(app, "keep") is not None
    with app.app_context():
        (event,) = db.session.scalars(db.select(AuditEvent).filter_by(kind="tenant.deleted"))
        assert event.actor == "operator:cli"
        assert event.details == {"tenant": "gone", "tenant_id": gone_id, "name": "Gone Ltd"}
    factories.tenant("gone")  # the slug is free again; the id is a new one (the highest was deleted)
    assert _tenant(app, "gone").id > gone_id


def test_delete_asks_first_unless_yes(app, factories):
    factories.tenant("shop")
    result = _cli(app, "tenants", "delete", "shop", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert _tenant(app, "shop") is not None
    result = _cli(app, "tenants", "delete", "shop", input="y\n")
    assert result.exit_code == 0 and "shop: deleted" in result.output
    assert _tenant(app, "shop") is None


def test_a_tenant_with_a_client_is_not_deleted(app, factories):
    factories.client(tenant=factories.tenant("shop"))
    factories.client(tenant="shop")
    assert "tenant 'shop' is not empty, these refer to it: clients: 2." in _refusal(app, "shop")


def test_a_tenant_whose_namespace_holds_a_username_is_not_deleted(app, factories):
    factories.tenant("shop")
    with app.app_context():
        create_account(phone="+14155550123", password="correct horse battery", username="ada",
                       tenant_id=_tenant(app, "shop").id)
    assert "usernames in its namespace (live or released): 1" in _refusal(app, "shop")


def test_a_tenant_with_an_import_is_not_deleted(app, factories, tmp_path):
    factories.tenant("shop")
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(json.dumps({"legacy_id": "u1", "phone": "+14155550124", "phone_verified": True}) + "\n")
    with app.app_context():
        start_job(str(legacy), "shop", mode="plan", policies=parse_policies(()))
    assert "import jobs: 1" in _refusal(app, "shop")


def test_unknown_tenant_and_json_refusal(app, factories):
    result = _cli(app, "tenants", "delete", "nope", "--yes", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output) == {"error": "no tenant 'nope'"}


def test_every_reference_to_a_tenant_has_a_name():
    """A new table with a foreign key to tenants blocks the delete by itself (the references are
    found at run time); it should also be named in the refusal."""
    references = {(t.name, fk.parent.name) for t in db.metadata.sorted_tables for fk in t.foreign_keys
                  if fk.column.table is Tenant.__table__}
    assert references and references <= set(REFERENCE_NAMES)


def test_a_tenant_with_legacy_data_is_not_deleted(app, factories, tmp_path):
    factories.tenant("shop")
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(json.dumps({"legacy_id": "u1", "phone": "+14155550125", "phone_verified": True,
                                  "username": "grace"}) + "\n")
    with app.app_context():
        run_job(start_job(str(legacy), "shop", mode="run", policies=parse_policies(())), batch_size=10)
    message = _refusal(app, "shop")
    for what in ("legacy mappings: 1", "import jobs: 1", "usernames in its namespace (live or released): 1",
                 "identities its legacy system added: 2"):
        assert what in message, message
