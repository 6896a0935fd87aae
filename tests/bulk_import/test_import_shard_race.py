"""Two shards (two real ``tessera import run`` processes) meeting the same new verified phones at
the same moment: every phone ends on exactly one account, both records of each person are mapped
to it, and every record is mapped exactly once. PostgreSQL only: the race is between two writers
on the live-identity unique index (SQLite serializes writers on a file lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from app.accounts.models import Account, Identity
from app.bulk_import.models import ImportConflict, LegacyMapping
from app.extensions import db

TESSERA = str(Path(sys.executable).with_name("tessera"))
PAIRS = 600


def _ids_by_shard(count: int) -> tuple[list[str], list[str]]:
    """``count`` legacy ids of shard 0/2 and as many of shard 1/2 (crc32 of the id, as the importer)."""
    shards: tuple[list[str], list[str]] = ([], [])
    n = 0
    while min(len(s) for s in shards) < count:
        legacy_id = f"r{n}"
        shards[zlib.crc32(legacy_id.encode()) % 2].append(legacy_id)
        n += 1
    return shards[0][:count], shards[1][:count]


def test_two_shards_racing_on_shared_verified_phones_end_with_one_account_per_phone(app, factories, database_url,
                                                                                      tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("a race between two writers needs PostgreSQL")
    factories.tenant("acme")
    left, right = _ids_by_shard(PAIRS)
    # Pair i: one record in each shard, at the same place in the file, with the same new verified
    # phone: the two processes reach them in the same batch at about the same time.
    lines = []
    for i, (a, b) in enumerate(zip(left, right)):
        phone = f"+1415{2000000 + i:07d}"
        lines.append({"legacy_id": a, "phone": phone, "phone_verified": True, "email": f"{a}@example.com"})
        lines.append({"legacy_id": b, "phone": phone, "phone_verified": True, "username": f"user-{b}"})
    path = tmp_path / "legacy.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATABASE_URL=database_url, TESSERA_INSTANCE_DIR=str(tmp_path / "instance"),
               TESSERA_SECRET_KEY="shard-race-test-secret-key-0123456789abcdef")
    # A start gate: the identities table locked until both processes wait on it in their first
    # batch's lookup, then released, so the two run through the file side by side.
    with psycopg.connect(database_url) as gate:
        gate.execute("LOCK TABLE identities IN ACCESS EXCLUSIVE MODE")
        runs = [subprocess.Popen([TESSERA, "import", "run", str(path), "--tenant", "acme", "--batch-size", "40",
                                  "--shard", f"{i}/2", "--json"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for i in (0, 1)]
        deadline = time.monotonic() + 60
        with psycopg.connect(database_url, autocommit=True) as watch:
            while time.monotonic() < deadline and all(run.poll() is None for run in runs):
                if watch.execute("SELECT count(*) FROM pg_locks WHERE relation = 'identities'::regclass"
                                 " AND NOT granted").fetchone()[0] >= 2:
                    break
                time.sleep(0.05)
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err
    # Released together, both looked the first batch's phones up before either committed: one of
    # them lost the race on the unique index and replayed that batch.
    assert sum(err.count("lost a race") for _, err in outputs) >= 1
    counters = [json.loads(out)["counters"] for out, _ in outputs]
    assert [c["read"] for c in counters] == [PAIRS, PAIRS]
    assert sum(c["created"] for c in counters) == PAIRS and sum(c["linked"] for c in counters) == PAIRS

    with app.app_context():
        db.session.remove()
        mappings = dict(db.session.execute(select(LegacyMapping.legacy_id, LegacyMapping.account_id)).all())
        assert db.session.scalar(select(func.count()).select_from(LegacyMapping)) == len(mappings) == 2 * PAIRS
        assert db.session.scalar(select(func.count()).select_from(Account)) == PAIRS
        phones = db.session.execute(select(Identity.value, Identity.account_id, Identity.verified)
                                    .where(Identity.kind == "phone", Identity.released_at.is_(None))).all()
        holders = {value: account_id for value, account_id, _ in phones}
        assert len(phones) == len(holders) == PAIRS and all(verified for _, _, verified in phones)
        for i, (a, b) in enumerate(zip(left, right)):
            phone = f"+1415{2000000 + i:07d}"
            assert mappings[a] == mappings[b] == holders[phone], (a, b, phone)
        # every person's other identifiers landed on that one account too
        assert db.session.scalar(select(func.count()).select_from(Identity)) == 3 * PAIRS
        assert db.session.scalar(select(func.count(func.distinct(Identity.account_id)))) == PAIRS
        # the link is reported once per pair, by whichever shard came second
        assert db.session.scalar(select(func.count()).select_from(ImportConflict)
                                 .where(ImportConflict.kind == "same_phone")) == PAIRS
