"""Bulk import (flow 6): the fast path, every conflict kind and policy, per-line errors, the dry
run's report, idempotent re-runs, newer records updating, sharding and the legacy-id mapping
export across a merge. On the suite's database (SQLite, or PostgreSQL)."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import func, select, text

from app.accounts.models import Account, Identity
from app.accounts.passwords import verify_password
from app.bulk_import.conflicts import parse_policies
from app.bulk_import.dry_run import plan_job
from app.bulk_import.jobs import ImportStopped, start_job
from app.bulk_import.models import AccountAttributes, ImportConflict, ImportJob, LegacyMapping
from app.bulk_import.run import run_job
from app.errors import InvalidInput
from app.extensions import db
from app.merging.models import MergeRecord

MD5_OF_PASSWORD = "5f4dcc3b5aa765d61d8327deb882cf99"  # md5("password")


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r + "\n" for r in records))
    return str(path)


def rec(legacy_id: str, **fields) -> dict:
    return {"legacy_id": legacy_id, **fields}


@pytest.fixture
def tenant(factories):
    return factories.tenant("acme")


@pytest.fixture
def importer(app, tenant, tmp_path):
    class Importer:
        def file(self, records, name="legacy.jsonl") -> str:
            return write_jsonl(tmp_path / name, records)

        def run(self, path, *policies, shard=(0, 1), batch_size=50) -> dict:
            with app.app_context():
                job = start_job(path, tenant, mode="run", policies=parse_policies(policies), shard=shard)
                return dict(run_job(job, batch_size=batch_size).counters)

        def plan(self, path, *policies) -> dict:
            with app.app_context():
                job = start_job(path, tenant, mode="plan", policies=parse_policies(policies))
                return plan_job(job, str(tmp_path / "report"), batch_size=50)

        def conflicts(self, kind=None) -> list[ImportConflict]:
            with app.app_context():
                query = select(ImportConflict).order_by(ImportConflict.id)
                if kind:
                    query = query.filter_by(kind=kind)
                return list(db.session.scalars(query))

        def account_of(self, legacy_id: str) -> Account | None:
            with app.app_context():
                mapping = db.session.scalar(select(LegacyMapping).filter_by(legacy_id=legacy_id))
                return db.session.get(Account, mapping.account_id) if mapping else None

        def identities(self, account_id: int) -> set[tuple]:
            with app.app_context():
                return {(i.kind, i.value) for i in db.session.scalars(
                    select(Identity).filter_by(account_id=account_id, released_at=None))}

        def counts(self) -> dict:
            with app.app_context():
                return {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                        for model in (Account, Identity, LegacyMapping, AccountAttributes)}

    return Importer()


def test_records_become_accounts_with_identities_password_profile_and_attributes(importer, app):
    path = importer.file([
        rec("u1", username="Alice", phone="+14155550101", phone_verified=True, email="Alice@Example.com",
            email_verified=True, password_hash=MD5_OF_PASSWORD, password_format="md5", name="Alice", locale="en-US",
            upstreams=[{"provider": "wechat", "subject": "o-1", "unionid": "un-1"}], attributes={"vip": 3},
            created_at="2015-03-01T08:00:00Z", updated_at=1714557600),
        rec("u2", phone="(415) 555-0102", phone_verified="yes", nickname="bob"),
    ])
    counters = importer.run(path)
    assert (counters["read"], counters["created"], counters["conflicts"]) == (2, 2, 0)
    alice = importer.account_of("u1")
    assert importer.identities(alice.id) == {("phone", "+14155550101"), ("email", "alice@example.com"),
                                             ("username", "alice"), ("upstream", "o-1")}
    assert (alice.name, alice.locale, alice.created_at.year) == ("Alice", "en-US", 2015)
    assert verify_password("password", alice.password_hash)[0]  # the legacy hash verifies (rehash on login)
    bob = importer.account_of("u2")
    assert importer.identities(bob.id) == {("phone", "+14155550102")}  # national format normalized to E.164
    with app.app_context():
        attributes = db.session.scalar(select(AccountAttributes).filter_by(account_id=alice.id))
        assert attributes.data == {"vip": 3}
        upstream = db.session.scalar(select(Identity).filter_by(kind="upstream"))
        assert (upstream.namespace, upstream.unionid) == ("wechat", "un-1")


def test_text_with_tabs_newlines_backslashes_and_nulls_arrives_intact(importer, app):
    """What COPY's text format must escape (PostgreSQL), next to plain values in the same columns."""
    odd = "tab\there\nnew line\r\\N back\\slash 漢字"
    path = importer.file([
        rec("e1", email="e1@example.com", name=odd, nickname="plain", attributes={"note": odd, "n": None},
            address={"street_address": "1 Main St\nFlat 2"}),
        rec("e2", email="e2@example.com", name="plain", nickname="\\N"),
    ])
    assert importer.run(path)["created"] == 2
    first, second = importer.account_of("e1"), importer.account_of("e2")
    assert (first.name, first.nickname, first.address) == (odd, "plain", {"street_address": "1 Main St\nFlat 2"})
    assert (second.name, second.nickname, second.given_name) == ("plain", "\\N", None)
    with app.app_context():
        attributes = db.session.scalar(select(AccountAttributes).filter_by(account_id=first.id))
        assert attributes.data == {"note": odd, "n": None}


def test_bad_records_get_a_per_line_error_and_the_rest_imports(importer, tmp_path):
    path = importer.file([
        rec("u1", phone="+14155550101"),
        "{not json",
        rec("", phone="+14155550102"),
        rec("u4", phone="+14155550104", updated_at="yesterday"),
        rec("u5", phone="+14155550105", phone_verified="maybe"),
        rec("u6", phone="+14155550106", password_hash="abc", password_format="rot13"),
        rec("u7", username="x"),
        rec("u8", email="only@example.com"),
    ])
    counters = importer.run(path)
    assert (counters["read"], counters["created"], counters["invalid"]) == (8, 2, 6)
    errors = {(c.line, c.legacy_id): c.detail for c in importer.conflicts("invalid_record")}
    assert set(errors) == {(2, None), (3, None), (4, "u4"), (5, "u5"), (6, "u6"), (7, "u7")}
    assert "not JSON" in errors[(2, None)] and "legacy_id" in errors[(3, None)] and "updated_at" in errors[(4, "u4")]
    assert "password_hash" in errors[(6, "u6")] and "username" in errors[(7, "u7")]

    # CSV: a row with the wrong number of cells, a quoted cell spanning lines
    csv_path = tmp_path / "legacy.csv"
    csv_path.write_text('legacy_id,phone,name\nc1,+14155550201,"Line one\nline two"\nc2,+14155550202\nc3,+14155550203,Carol\n')
    counters = importer.run(str(csv_path))
    assert (counters["created"], counters["invalid"]) == (2, 1)
    assert importer.account_of("c1").name == "Line one\nline two"
    assert [(c.line, c.detail) for c in importer.conflicts("invalid_record")][-1] == (4, "2 cells for 3 columns")


@pytest.mark.parametrize("policy", ["link", "merge", "overwrite", "skip"])
def test_same_verified_phone_is_one_person_by_policy(importer, app, policy):
    path = importer.file([
        rec("u1", phone="+14155550101", phone_verified=True, name="First", username="first"),
        rec("u2", phone="+14155550101", phone_verified=True, name="Second", nickname="two", email="two@example.com"),
    ])
    counters = importer.run(path, f"same_phone={policy}")
    [conflict] = importer.conflicts("same_phone")
    assert (conflict.policy, conflict.line, conflict.legacy_id, conflict.other["legacy_ids"]) == (policy, 2, "u2", ["u1"])
    first = importer.account_of("u1")
    if policy == "skip":
        assert importer.account_of("u2") is None and counters["skipped"] == 1
        return
    second = importer.account_of("u2")
    if policy == "merge":
        assert second.id != first.id and (second.status, second.merged_into_id) == ("merged", first.id)
        with app.app_context():
            assert db.session.scalar(select(MergeRecord.status).filter_by(origin="import")) == "completed"
    else:
        assert second.id == first.id
    assert importer.identities(first.id) == {("phone", "+14155550101"), ("username", "first"), ("email", "two@example.com")}
    expected_name = {"link": "First", "merge": "First", "overwrite": "Second"}[policy]
    assert (first.name, first.nickname) == (expected_name, "two")


def test_same_phone_on_an_existing_hub_account_links_into_it(importer, factories, app):
    account = factories.account(phone="+14155550101")
    path = importer.file([rec("u1", phone="+14155550101", phone_verified=True, username="legacy-u1")])
    assert importer.run(path)["linked"] == 1
    assert importer.account_of("u1").id == account.id
    assert ("username", "legacy-u1") in importer.identities(account.id)
    # The record was linked to an account it did not create; the identity it added is the tenant's.
    with app.app_context():
        mapping = db.session.scalar(select(LegacyMapping).filter_by(legacy_id="u1"))
        added = db.session.scalar(select(Identity).filter_by(kind="username", value="legacy-u1"))
        phone = db.session.scalar(select(Identity).filter_by(kind="phone", value="+14155550101"))
        assert not mapping.created_account and added.legacy_tenant_id == mapping.tenant_id
        assert phone.legacy_tenant_id is None
    path = importer.file([rec("u2", phone="+14155550102", username="legacy-u2")], name="second.jsonl")
    assert importer.run(path)["created"] == 1
    with app.app_context():
        mapping = db.session.scalar(select(LegacyMapping).filter_by(legacy_id="u2"))
        assert mapping.created_account and {i.legacy_tenant_id for i in db.session.scalars(
            select(Identity).filter_by(account_id=mapping.account_id))} == {mapping.tenant_id}
    assert importer.conflicts("same_phone")[0].other == {"account_id": account.id, "value": "+14155550101"}


def test_unverified_phone_never_joins_accounts(importer):
    path = importer.file([
        rec("u1", phone="+14155550101", phone_verified=True),
        rec("u2", phone="+14155550101", phone_verified=False, email="u2@example.com"),
    ])
    counters = importer.run(path, "same_phone=merge")
    assert counters["created"] == 2 and counters["merged"] == 0
    second = importer.account_of("u2")
    assert importer.identities(second.id) == {("email", "u2@example.com")}  # imported without the phone
    [conflict] = importer.conflicts("same_phone")
    assert conflict.policy == "skip" and "not verified on both sides" in conflict.detail


@pytest.mark.parametrize("policy", ["skip", "overwrite"])
def test_duplicate_username_in_the_tenant(importer, policy):
    path = importer.file([rec("u1", username="alice", phone="+14155550101"),
                          rec("u2", username="Alice", phone="+14155550102")])
    importer.run(path, f"duplicate_username={policy}")
    first, second = importer.account_of("u1"), importer.account_of("u2")
    holder = first if policy == "skip" else second
    assert ("username", "alice") in importer.identities(holder.id)
    assert ("username", "alice") not in importer.identities((second if policy == "skip" else first).id)
    [conflict] = importer.conflicts("duplicate_username")
    assert (conflict.policy, conflict.legacy_id, conflict.other["legacy_ids"]) == (policy, "u2", ["u1"])


def test_username_held_by_a_hub_account_moves_on_overwrite(importer, app, tenant):
    first = importer.file([rec("u1", username="alice", phone="+14155550101")], "a.jsonl")
    importer.run(first)
    second = importer.file([rec("u2", username="alice", phone="+14155550102")], "b.jsonl")
    importer.run(second, "duplicate_username=overwrite")
    assert ("username", "alice") in importer.identities(importer.account_of("u2").id)
    with app.app_context():  # the old row is released, not deleted (audit)
        assert db.session.scalar(select(func.count()).select_from(Identity).where(
            Identity.value == "alice", Identity.released_at.is_not(None))) == 1


@pytest.mark.parametrize(("policy", "verified", "joined"), [
    ("skip", True, False), ("link", True, True), ("link", False, False), ("overwrite", True, False)])
def test_shared_email(importer, policy, verified, joined):
    path = importer.file([
        rec("u1", email="same@example.com", email_verified=True, phone="+14155550101"),
        rec("u2", email="same@example.com", email_verified=verified, phone="+14155550102"),
    ])
    importer.run(path, f"shared_email={policy}")
    first, second = importer.account_of("u1"), importer.account_of("u2")
    assert (first.id == second.id) is joined
    if joined:
        assert ("phone", "+14155550102") in importer.identities(first.id)
    elif policy == "overwrite":
        assert ("email", "same@example.com") in importer.identities(second.id)
    else:
        assert ("email", "same@example.com") in importer.identities(first.id)
    [conflict] = importer.conflicts("shared_email")
    assert conflict.policy == ("skip" if policy == "link" and not verified else policy)


@pytest.mark.parametrize("policy", ["skip", "link"])
def test_same_upstream_subject_or_unionid(importer, policy):
    path = importer.file([
        rec("u1", phone="+14155550101", upstreams=[{"provider": "wechat", "subject": "o-1", "unionid": "un-1"}]),
        rec("u2", phone="+14155550102", upstreams=[{"provider": "wechat", "subject": "o-1"}]),
        rec("u3", phone="+14155550103", upstreams=[{"provider": "wechat", "subject": "o-3", "unionid": "un-1"}]),
    ])
    importer.run(path, f"same_upstream={policy}")
    first = importer.account_of("u1")
    ids = {importer.account_of(x).id for x in ("u2", "u3")}
    assert (ids == {first.id}) is (policy == "link")
    assert [c.legacy_id for c in importer.conflicts("same_upstream")] == ["u2", "u3"]


def test_malformed_phone_and_email_are_dropped_or_stop_the_run(importer):
    path = importer.file([rec("u1", phone="+1-555-not-a-phone", email="bad@", username="kept")])
    assert importer.run(path)["created"] == 1
    assert importer.identities(importer.account_of("u1").id) == {("username", "kept")}
    assert {c.kind for c in importer.conflicts()} == {"malformed_phone", "malformed_email"}

    path = importer.file([rec("u2", username="fine"), rec("u3", email="bad@", username="other")], "b.jsonl")
    with pytest.raises(ImportStopped):
        importer.run(path, "malformed_email=fail", batch_size=1)
    assert importer.account_of("u2") is not None and importer.account_of("u3") is None  # earlier batch kept


def test_a_failed_run_resumes_with_another_policy(importer, app):
    path = importer.file([rec("u1", phone="+14155550101", phone_verified=True),
                          rec("u2", phone="+14155550101", phone_verified=True)])
    with pytest.raises(ImportStopped, match="line 2: same_phone"):
        importer.run(path, "same_phone=fail", batch_size=1)
    with app.app_context():
        job = db.session.scalar(select(ImportJob))
        assert (job.status, job.checkpoint_line) == ("failed", 1)
    counters = importer.run(path, "same_phone=link", batch_size=1)
    assert counters["created"] == 1 and counters["linked"] == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ImportJob)) == 1  # the same job, resumed


def test_rerunning_a_file_changes_nothing(importer, app):
    path = importer.file([rec(f"u{i}", phone=f"+1415555{i:04d}", phone_verified=True, username=f"user{i}",
                              attributes={"n": i}) for i in range(1, 121)]
                         + [rec("dup", phone="+14155550001", phone_verified=True), "garbage"])
    first = importer.run(path)
    before = importer.counts()
    with app.app_context():
        stamps = dict(db.session.execute(select(Account.id, Account.updated_at)).all())
    second = importer.run(path)
    assert importer.counts() == before
    assert (second["unchanged"], second["created"], second["linked"], second["invalid"]) == (121, 0, 0, 1)
    assert first["read"] == second["read"] == 122
    with app.app_context():
        assert dict(db.session.execute(select(Account.id, Account.updated_at)).all()) == stamps


def test_a_newer_record_updates_and_an_older_one_does_not(importer, app):
    importer.run(importer.file([rec("u1", phone="+14155550101", name="Old", updated_at="2024-01-01T00:00:00Z",
                                    attributes={"level": 1})], "v1.jsonl"))
    newer = importer.file([rec("u1", phone="+14155550101", email="new@example.com", name="New",
                               password_hash=MD5_OF_PASSWORD, password_format="md5",
                               updated_at="2024-02-01T00:00:00Z", attributes={"level": 2})], "v2.jsonl")
    assert importer.run(newer)["updated"] == 1
    account = importer.account_of("u1")
    assert account.name == "New" and verify_password("password", account.password_hash)[0]
    assert importer.identities(account.id) == {("phone", "+14155550101"), ("email", "new@example.com")}
    older = importer.file([rec("u1", phone="+14155550101", name="Older", updated_at="2023-01-01T00:00:00Z")], "v0.jsonl")
    assert importer.run(older)["stale"] == 1
    assert importer.account_of("u1").name == "New"
    with app.app_context():
        assert db.session.scalar(select(AccountAttributes.data)) == {"level": 2}
        assert db.session.scalar(select(func.count()).select_from(Account)) == 1


def test_plan_reports_every_conflict_and_writes_nothing(importer, app, factories, tmp_path):
    factories.account(phone="+14155550199")
    path = importer.file([
        rec("u1", phone="+14155550101", phone_verified=True, username="alice"),
        rec("u2", phone="+14155550101", phone_verified=True),
        rec("u3", phone="+14155550199", phone_verified=False, username="Alice"),
        rec("u4", email="broken", username="bob"),
        "nonsense",
    ])
    before = importer.counts()
    summary = importer.plan(path, "same_phone=merge")
    assert importer.counts() == before
    assert summary["records"] == 5 and summary["conflicts_by_kind"] == {
        "same_phone": 2, "duplicate_username": 1, "malformed_email": 1, "invalid_record": 1}
    with open(tmp_path / "report" / "conflicts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    same_phone = {r["legacy_id"]: r for r in rows if r["kind"] == "same_phone"}
    assert same_phone["u2"]["policy"] == "merge" and same_phone["u2"]["other_legacy_ids"] == "u1"
    assert same_phone["u3"]["policy"] == "skip" and same_phone["u3"]["other_account_id"]
    assert len(json.loads((tmp_path / "report" / "conflicts.json").read_text())) == len(rows) == 5
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["records"] == 5


def test_plan_with_a_fail_policy_names_the_line_a_run_would_stop_at(importer):
    path = importer.file([rec("u1", username="alice"), rec("u2", username="alice")])
    assert importer.plan(path, "duplicate_username=fail")["run_would_stop_at"] == {"line": 2, "kind": "duplicate_username"}


def test_policies_are_checked():
    with pytest.raises(InvalidInput):
        parse_policies(["same_phone=overwrite", "malformed_phone=merge"])
    with pytest.raises(InvalidInput):
        parse_policies(["nonsense=skip"])
    assert parse_policies(["same-phone=merge"])["same_phone"] == "merge"


def test_two_shards_import_every_record_exactly_once(importer, app):
    records = [rec(f"u{i}", phone=f"+1415555{i:04d}", phone_verified=True) for i in range(1, 201)]
    records += [rec("twin", phone="+14155550007", phone_verified=True)]
    path = importer.file(records)
    first = importer.run(path, shard=(0, 2))
    second = importer.run(path, shard=(1, 2))
    assert first["read"] + second["read"] == 201
    assert first["other_shards"] == second["read"] and second["other_shards"] == first["read"]
    assert first["created"] + second["created"] == 200 and first["linked"] + second["linked"] == 1
    assert importer.counts()["legacy_mappings"] == 201 and importer.counts()["accounts"] == 200
    assert importer.account_of("twin").id == importer.account_of("u7").id


def test_mapping_export_follows_merges(importer, app, factories, tmp_path):
    from app.bulk_import.mapping import export_mapping
    from app.merging.run import merge_accounts
    from app.oidc.clients import get_client
    from app.oidc.subjects import subject_for

    client = factories.client(tenant="acme")
    importer.run(importer.file([rec("u1", phone="+14155550101"), rec("u2", phone="+14155550102"),
                                rec("u3", phone="+14155550103")]))
    one, two, three = (importer.account_of(x).id for x in ("u1", "u2", "u3"))
    with app.app_context():
        merge_accounts(one, two, origin="operator", reason="test")
        merge_accounts(three, one, origin="operator", reason="test: a chain u2 -> u1 -> u3")
        out = tmp_path / "mapping.csv"
        with open(out, "w", newline="") as f:
            assert export_mapping("acme", client.client_id, f) == 3
        expected = subject_for(get_client(client.client_id), three)
    rows = list(csv.DictReader(open(out, newline="")))
    assert [(r["legacy_id"], r["sub"], r["status"]) for r in rows] == [(x, expected, "active") for x in ("u1", "u2", "u3")]


def test_shards_split_every_line_once_also_unreadable_ones_and_tricky_legacy_ids(importer, app):
    """The reader reads a legacy id off the raw line to skip other shards' records undecoded; a
    line it cannot be sure of is decoded first. Either way each line is one shard's."""
    lines = [json.dumps(rec(f"u{i}", email=f"u{i}@example.com"), separators=(",", ":")) for i in range(60)]
    lines += [
        '{"legacy_id":"bad1", "email": broken',  # unreadable, legacy id readable: by the id
        '{"legacy_id":"a\\u0062c","email":"abc@example.com"}',  # escaped: decoded, legacy id "abc"
        '{"legacy_id":"x1","email":"x1@example.com","legacy_id":"x2"}',  # repeated key: the last one
        '{"legacy_id":"y1","email":"y1@example.com","legacy\\u005fid":"y2"}',  # the same, escaped
        '{"legacy_id":"  ","email":"blank@example.com"}',  # blank: by line, invalid
        ' {"legacy_id":"sp1","email":"sp1@example.com"}',  # leading space: decoded
        '{"email":"noid@example.com","legacy_id":"late"}',
        'not json at all',
    ]
    path = importer.file(lines)
    first = importer.run(path, shard=(0, 2))
    second = importer.run(path, shard=(1, 2))
    assert first["read"] + second["read"] == len(lines)
    assert first["other_shards"] == second["read"] and second["other_shards"] == first["read"]
    assert first["invalid"] + second["invalid"] == 3
    with app.app_context():
        mapped = set(db.session.scalars(select(LegacyMapping.legacy_id)))
    assert mapped == {f"u{i}" for i in range(60)} | {"abc", "x2", "y2", "sp1", "late"}


def test_a_lone_surrogate_escape_is_an_invalid_record_not_a_crash(importer):
    path = importer.file(['{"legacy_id": "s1", "email": "s1@example.com", "name": "bad \\ud800 name"}',
                          rec("s2", email="s2@example.com")])
    counters = importer.run(path)
    assert counters["invalid"] == 1 and counters["created"] == 1
    [conflict] = importer.conflicts("invalid_record")
    assert conflict.line == 1 and conflict.legacy_id == "s1" and "surrogate" in conflict.detail


def test_postgresql_statistics_follow_the_young_tables(importer, app, database_url):
    """The batch lookups are planned on fresh statistics while the tables grow from empty (on an
    empty table's statistics PostgreSQL scans the whole identity index for each lookup)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's planner statistics")
    records = [rec(f"s{i}", phone=f"+1415{3000000 + i:07d}", phone_verified=True, email=f"s{i}@example.com")
               for i in range(1500)]
    importer.run(importer.file(records), batch_size=100)
    with app.app_context():
        stats = dict(db.session.execute(text(
            "SELECT relname, reltuples FROM pg_class WHERE oid IN ('identities'::regclass, 'legacy_mappings'::regclass)")).all())
    # TRUNCATE between tests leaves reltuples at -1 (never analyzed); autovacuum looks once a minute.
    assert stats["identities"] >= 1000 and stats["legacy_mappings"] >= 500, stats


def test_the_import_commands_tune_the_garbage_collector_only_while_they_run():
    import gc

    from app.bulk_import.cli import bulk_gc

    before = gc.get_threshold()
    with bulk_gc():
        assert gc.get_threshold()[0] == 50_000 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


#: Hashes passlib can parse but no password can ever match: configuration strings (a hash's
#: settings without its checksum) and a phpass hash cut short.
NEVER_VERIFY = [
    ("$6$saltsalt$", None), ("$5$rounds=5000$saltsalt$", "sha256_crypt"), ("pbkdf2_sha256$1000$salt$", None),
    ("$2b$12$" + "C" * 21 + "u", "bcrypt"), ("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r", "phpass"), ("$1$abcdefgh$", None),
]


def test_hashes_that_can_never_verify_are_invalid_records(importer):
    path = importer.file([rec(f"h{i}", email=f"h{i}@example.com", password_hash=value, password_format=fmt)
                          for i, (value, fmt) in enumerate(NEVER_VERIFY)]
                         + [rec("ok", email="ok@example.com", password_hash="$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0")])
    counters = importer.run(path)
    assert (counters["created"], counters["invalid"]) == (1, len(NEVER_VERIFY))
    conflicts = importer.conflicts("invalid_record")
    assert {c.legacy_id for c in conflicts} == {f"h{i}" for i in range(len(NEVER_VERIFY))}
    assert all("password_hash" in c.detail for c in conflicts)
    assert importer.account_of("h0") is None and importer.account_of("ok") is not None
