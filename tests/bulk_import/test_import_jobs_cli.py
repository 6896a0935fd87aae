"""`tessera import jobs` and `tessera import show` through the app's own command line, on the suite's
database (SQLite, or PostgreSQL): the jobs of plans and runs, their progress and their conflicts,
as recorded by the importer."""

from __future__ import annotations


import pytest

from app.bulk_import.conflicts import parse_policies
from app.bulk_import.dry_run import plan_job
from app.bulk_import.jobs import ImportStopped, start_job
from app.bulk_import.run import run_job
from tests.bulk_import.test_import import rec, write_jsonl
from tests.cli import cli as _cli, cli_json as _json, cli_refused as _refused  # noqa: F401




RECORDS = [
    rec("u1", phone="+14155550101", phone_verified=True, username="ada"),
    rec("u2", phone="+14155550102", phone_verified=True, username="ada"),  # duplicate_username: skip
    rec("u3", phone="+1-555-not-a-phone", username="kept"),  # malformed_phone: skip (imported without it)
    rec("u4", phone="+14155550104", phone_verified=True, email="x@example.com", email_verified=True),
]


def test_jobs_lists_plans_and_runs_and_show_tells_their_progress_and_conflicts(app, factories, tmp_path):
    factories.tenant("acme")
    factories.tenant("other")
    path = write_jsonl(tmp_path / "legacy.jsonl", RECORDS)
    with app.app_context():
        plan = start_job(path, "acme", mode="plan", policies=parse_policies(()))
        plan_job(plan, str(tmp_path / "report"), batch_size=2)
        run = start_job(path, "acme", mode="run", policies=parse_policies(()))
        run_job(run, batch_size=2)
        plan_id, run_id = plan.id, run.id
        elsewhere = start_job(path, "other", mode="plan", policies=parse_policies(())).id

    jobs = _json(app, "import", "jobs")
    assert [(j["job"], j["tenant"], j["mode"], j["status"]) for j in jobs] == [
        (elsewhere, "other", "plan", "running"), (run_id, "acme", "run", "completed"),
        (plan_id, "acme", "plan", "completed")]
    assert [j["job"] for j in _json(app, "import", "jobs", "--tenant", "acme")] == [run_id, plan_id]
    assert [j["job"] for j in _json(app, "import", "jobs", "--status", "running")] == [elsewhere]
    line = _cli(app, "import", "jobs", "--tenant", "acme").output.splitlines()[0]
    assert line.startswith(f"job {run_id}: acme  run completed  shard 0/1  line 4") and "legacy.jsonl" in line

    shown = _json(app, "import", "show", str(run_id))
    assert (shown["status"], shown["tenant"], shown["mode"], shown["shard"]) == ("completed", "acme", "run", "0/1")
    assert shown["counters"]["read"] == 4 and shown["counters"]["created"] == 4
    assert shown["checkpoint"]["line"] == 4 and shown["finished_at"] and shown["started_at"]
    assert shown["policies"]["duplicate_username"] == "skip"
    assert shown["conflicts_by_kind"] == [{"kind": "duplicate_username", "policy": "skip", "count": 1},
                                          {"kind": "malformed_phone", "policy": "skip", "count": 1}]
    assert shown["conflicts_recorded"] == 2
    assert [(c["line"], c["legacy_id"], c["kind"]) for c in shown["conflicts"]] == [
        (2, "u2", "duplicate_username"), (3, "u3", "malformed_phone")]
    assert _json(app, "import", "show", str(plan_id))["plan"]["create"] == 4

    limited = _json(app, "import", "show", str(run_id), "--conflicts", "1")
    assert len(limited["conflicts"]) == 1 and limited["conflicts_recorded"] == 2
    text = _cli(app, "import", "show", str(run_id), "--conflicts", "1").output
    assert "status: completed" in text and "conflicts duplicate_username (skip): 1" in text
    assert "… 1 more (--conflicts N)" in text


def test_show_tells_where_a_stopped_run_stopped(app, factories, tmp_path):
    factories.tenant("acme")
    path = write_jsonl(tmp_path / "legacy.jsonl", RECORDS)
    with app.app_context():
        job = start_job(path, "acme", mode="run", policies=parse_policies(["duplicate_username=fail"]))
        job_id = job.id
        with pytest.raises(ImportStopped):  # the run records where it stopped
            run_job(job, batch_size=1)
    shown = _json(app, "import", "show", str(job_id))
    assert shown["status"] == "failed" and "duplicate_username" in shown["last_error"]
    assert shown["checkpoint"]["line"] == 1 and shown["finished_at"] is None
    assert [c["kind"] for c in shown["conflicts"]] == ["duplicate_username"]


def test_unknown_jobs_and_tenants(app):
    assert "no import job 999" in _refused(app, "import", "show", "999")
    assert "no tenant 'nope'" in _refused(app, "import", "jobs", "--tenant", "nope")
    assert _json(app, "import", "jobs") == []
    assert _cli(app, "import", "show", "1", "--conflicts", "-1").exit_code == 2
