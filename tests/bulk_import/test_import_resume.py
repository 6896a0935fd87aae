"""A real ``tessera import run`` process killed with SIGKILL in the middle of a run, then run
again: it resumes at its checkpoint and every record ends up imported exactly once. On the
suite's database (SQLite file, or PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from app.accounts.models import Account, Identity
from app.bulk_import.models import ImportJob, LegacyMapping
from app.extensions import db
from bench.import_gen import records, write

TESSERA = str(Path(sys.executable).with_name("tessera"))
RECORDS = 6000


def _tessera(database_url: str, tmp_path: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATABASE_URL=database_url, TESSERA_INSTANCE_DIR=str(tmp_path / "instance"),
               TESSERA_SECRET_KEY="resume-test-secret-key-0123456789abcdef")
    return subprocess.Popen([TESSERA, "import", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _counts(app) -> dict:
    with app.app_context():
        db.session.remove()
        return {
            "accounts": db.session.scalar(select(func.count()).select_from(Account)),
            "identities": db.session.scalar(select(func.count()).select_from(Identity)),
            "mappings": db.session.scalar(select(func.count()).select_from(LegacyMapping)),
            "distinct_mapped": db.session.scalar(select(func.count(func.distinct(LegacyMapping.legacy_id)))),
        }


def _checkpoint(app) -> tuple[int, str | None]:
    with app.app_context():
        db.session.remove()
        row = db.session.execute(select(ImportJob.checkpoint_offset, ImportJob.status)).first()
        return (row[0], row[1]) if row else (0, None)


def test_kill_9_in_the_middle_of_a_run_then_resume_imports_every_record_once(app, factories, database_url, tmp_path):
    factories.tenant("acme")
    path = tmp_path / "legacy.jsonl"
    write(str(path), records(RECORDS, duplicates=0.02, conflicts=0.02, hash_formats=["md5", "salted_md5"]))

    run = _tessera(database_url, tmp_path, "run", str(path), "--tenant", "acme", "--batch-size", "25")
    deadline = time.monotonic() + 60
    while _checkpoint(app)[0] == 0 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    offset, _ = _checkpoint(app)
    run.send_signal(signal.SIGKILL)  # kill -9: no handler, no cleanup, mid-batch
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    killed_at, status = _checkpoint(app)
    assert 0 < offset <= killed_at < path.stat().st_size and status == "running"
    partial = _counts(app)
    assert 0 < partial["mappings"] < RECORDS

    resumed = _tessera(database_url, tmp_path, "run", str(path), "--tenant", "acme", "--batch-size", "500")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming import job" in err
    after = _counts(app)
    with app.app_context():
        job = db.session.scalar(select(ImportJob))
        counters = job.counters
        assert job.status == "completed" and job.checkpoint_offset == path.stat().st_size
    # every record read exactly once across both processes (the killed batch was rolled back whole)
    assert counters["read"] == RECORDS
    imported = counters["created"] + counters["linked"] + counters["overwritten"]
    assert after["mappings"] == after["distinct_mapped"] == imported
    assert after["accounts"] == counters["created"]
    assert counters["invalid"] > 0 and counters["linked"] > 0

    # and a third run of the same file changes nothing
    again = _tessera(database_url, tmp_path, "run", str(path), "--tenant", "acme")
    again.communicate(timeout=300)
    assert again.returncode == 0 and _counts(app) == after
