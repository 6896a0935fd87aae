"""Bulk import benchmark: N synthetic legacy records (bench/import_gen.py) into a fresh PostgreSQL
database with ``tessera import run``; prints records/s, the importers' peak RSS, the CPU per record of the
importers and of their PostgreSQL backends, the load average during the run, the lost-race replays
and a reference loop's CPU time (how fast the cores were), then checks the imported data (no row
without its account, every legacy id mapped once, no live identifier on two accounts, every record
accounted for) and exits non-zero if it is inconsistent.

    python bench/import_bench.py [--records 1000000] [--shards 2] [--batch-size 1000]

The database ``$BENCH_IMPORT_DB`` (default tessera_import_bench) on $BENCH_PG (default
postgresql://postgres@127.0.0.1:5432) is dropped and recreated, its schema built by
``tessera db upgrade``. The generated file is kept in bench/results/ and reused. Target (issue 7):
1,000,000 records in at most 120 s on a 2-core machine, importer RSS under 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loadgen import cpu_seconds  # noqa: E402  (the /proc reader of make bench)

TESSERA = str(Path(sys.executable).with_name("tessera"))


#: Each query counts rows that must not exist after an import of the generated file.
INTEGRITY_CHECKS = {
    "identities_without_account": "SELECT count(*) FROM identities i LEFT JOIN accounts a ON a.id = i.account_id"
                                  " WHERE a.id IS NULL",
    "mappings_without_account": "SELECT count(*) FROM legacy_mappings m LEFT JOIN accounts a ON a.id = m.account_id"
                                " WHERE a.id IS NULL",
    "attributes_without_account": "SELECT count(*) FROM account_attributes t LEFT JOIN accounts a ON a.id = t.account_id"
                                  " WHERE a.id IS NULL",
    "accounts_without_mapping": "SELECT count(*) FROM accounts a WHERE NOT EXISTS"
                                " (SELECT 1 FROM legacy_mappings m WHERE m.account_id = a.id)",
    "legacy_ids_mapped_twice": "SELECT count(*) FROM (SELECT tenant_id, legacy_id FROM legacy_mappings"
                               " GROUP BY tenant_id, legacy_id HAVING count(*) > 1) d",
    "live_identifiers_on_two_accounts": "SELECT count(*) FROM (SELECT kind, namespace, value FROM identities"
                                        " WHERE released_at IS NULL GROUP BY kind, namespace, value"
                                        " HAVING count(DISTINCT account_id) > 1) d",
}


def reference_loop_seconds() -> float:
    """CPU seconds of a fixed pure-Python loop (10M additions), taken just before the run: how fast
    this machine's cores were. Instances of one machine type, and one instance from hour to hour,
    differ by up to ≈ 1.8× (bench/README.md)."""
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.process_time() - started, 3)


def _env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATABASE_URL=database_url, TESSERA_SECRET_KEY="import-bench-secret-key-0123456789abcdef",
               TESSERA_INSTANCE_DIR=str(HERE / "results" / "instance"))
    return env


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None once it has gone."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return None


class CpuWatcher:
    """CPU seconds of the importers and of their PostgreSQL backends (last value seen in /proc,
    sampled every 0.5 s: PostgreSQL must run on this machine), and the 1-minute load average."""

    def __init__(self, server: str, database: str, pids: list[int]):
        self.importers: dict[int, float] = {}
        self.backends: dict[int, float] = {}
        self.loads: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(server, database, pids), daemon=True)
        self.thread.start()

    def _run(self, server: str, database: str, pids: list[int]) -> None:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            while not self.done.wait(0.5):
                self.loads.append(os.getloadavg()[0])
                rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
                for seen, ids in ((self.backends, [r[0] for r in rows]), (self.importers, pids)):
                    for pid in ids:
                        if (value := _cpu_seconds(pid)) is not None:
                            seen[pid] = value

    def stop(self) -> dict:
        self.done.set()
        self.thread.join()
        loads = sorted(self.loads) or [0.0]
        return {"cpu_seconds": {"importers": round(sum(self.importers.values()), 1),
                                "postgres_backends": round(sum(self.backends.values()), 1)},
                "load": {"min": round(loads[0], 2), "median": round(loads[len(loads) // 2], 2), "max": round(loads[-1], 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=2, help="Importer processes run side by side (--shard i/n).")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="1000: shards racing on shared identifiers replay fewer, smaller batches (bench/README.md)")
    parser.add_argument("--duplicates", type=float, default=0.02)
    parser.add_argument("--conflicts", type=float, default=0.01)
    args = parser.parse_args()

    server = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    name = os.environ.get("BENCH_IMPORT_DB", "tessera_import_bench")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{server}/{name}"
    env = _env(database_url)
    subprocess.run([TESSERA, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([TESSERA, "tenants", "create", "--slug", "legacy", "--name", "Legacy"], env=env, check=True,
                   capture_output=True)

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    data = results / f"import-{args.records}-{args.duplicates}-{args.conflicts}.jsonl"
    if not data.exists():
        started = time.monotonic()
        subprocess.run([sys.executable, str(HERE / "import_gen.py"), str(data), "--records", str(args.records),
                        "--duplicates", str(args.duplicates), "--conflicts", str(args.conflicts)], check=True)
        print(f"generated {data.name} ({data.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.1f} s")

    reference = reference_loop_seconds()
    started = time.monotonic()
    logs = [open(results / f"import-shard-{i}.log", "w") for i in range(args.shards)]  # progress lines, errors
    processes = [
        subprocess.Popen([TESSERA, "import", "run", str(data), "--tenant", "legacy", "--batch-size", str(args.batch_size),
                          "--shard", f"{i}/{args.shards}", "--json"], env=env, stdout=subprocess.PIPE, stderr=logs[i],
                         text=True)
        for i in range(args.shards)
    ]
    watcher = CpuWatcher(server, name, [p.pid for p in processes])
    summaries = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"import failed: exit {process.returncode} (see bench/results/import-shard-*.log)")
        summaries.append(json.loads(out))
    elapsed = time.monotonic() - started
    cpu = watcher.stop()
    replays = sum((results / f"import-shard-{i}.log").read_text().count("lost a race") for i in range(args.shards))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child (Linux: KiB)

    totals: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary["counters"].items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    with psycopg.connect(database_url) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("accounts", "identities", "legacy_mappings", "account_attributes", "import_conflicts")}
        checks = {name: conn.execute(sql).fetchone()[0] for name, sql in INTEGRITY_CHECKS.items()}
    mapped = sum(totals.get(k, 0) for k in ("created", "linked", "overwritten", "merged"))
    checks["records_not_accounted_for"] = args.records - mapped - sum(
        totals.get(k, 0) for k in ("skipped", "invalid", "updated", "unchanged", "stale"))
    checks["mappings_not_from_a_record"] = rows["legacy_mappings"] - mapped
    report = {
        "records": args.records, "shards": args.shards, "batch_size": args.batch_size, "seconds": round(elapsed, 1),
        "records_per_second": round(args.records / elapsed), "peak_rss_mb": round(peak_rss_mb), "counters": totals,
        "rows": rows, "cpus": os.cpu_count(), "target": {"seconds": 120, "rss_mb": 500},
        "cpu_seconds": cpu["cpu_seconds"], "cpu_us_per_record": {k: round(v / args.records * 1e6) for k, v in cpu["cpu_seconds"].items()},
        "load_average_1min": cpu["load"], "batches_replayed_after_a_lost_race": replays,
        "integrity_violations": checks, "reference_loop_cpu_seconds": reference,
    }
    (results / "import-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"{args.records:,} records in {elapsed:.1f} s: {args.records / elapsed:,.0f} records/s, "
          f"peak importer RSS {peak_rss_mb:.0f} MB, CPU µs/record {report['cpu_us_per_record']}, "
          f"load {report['load_average_1min']}, replays {replays}, reference loop {reference} s")
    broken = {name: count for name, count in checks.items() if count}
    if broken:
        raise SystemExit(f"the imported data is inconsistent: {broken}")


if __name__ == "__main__":
    main()
