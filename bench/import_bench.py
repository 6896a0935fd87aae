"""Bulk import benchmark: N synthetic legacy records (bench/import_gen.py) into a fresh PostgreSQL
database with ``tessera import run``; prints records/s and the importer's peak RSS.

    python bench/import_bench.py [--records 1000000] [--shards 1] [--batch-size 5000]

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
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
TESSERA = str(Path(sys.executable).with_name("tessera"))


def _env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATABASE_URL=database_url, TESSERA_SECRET_KEY="import-bench-secret-key-0123456789abcdef",
               TESSERA_INSTANCE_DIR=str(HERE / "results" / "instance"))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=1, help="Importer processes run side by side (--shard i/n).")
    parser.add_argument("--batch-size", type=int, default=5000)
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

    started = time.monotonic()
    logs = [open(results / f"import-shard-{i}.log", "w") for i in range(args.shards)]  # progress lines, errors
    processes = [
        subprocess.Popen([TESSERA, "import", "run", str(data), "--tenant", "legacy", "--batch-size", str(args.batch_size),
                          "--shard", f"{i}/{args.shards}", "--json"], env=env, stdout=subprocess.PIPE, stderr=logs[i],
                         text=True)
        for i in range(args.shards)
    ]
    summaries = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"import failed: exit {process.returncode} (see bench/results/import-shard-*.log)")
        summaries.append(json.loads(out))
    elapsed = time.monotonic() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child (Linux: KiB)

    totals: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary["counters"].items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    with psycopg.connect(database_url) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("accounts", "identities", "legacy_mappings", "account_attributes", "import_conflicts")}
    report = {
        "records": args.records, "shards": args.shards, "batch_size": args.batch_size, "seconds": round(elapsed, 1),
        "records_per_second": round(args.records / elapsed), "peak_rss_mb": round(peak_rss_mb), "counters": totals,
        "rows": rows, "cpus": os.cpu_count(), "target": {"seconds": 120, "rss_mb": 500},
    }
    (results / "import-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"{args.records:,} records in {elapsed:.1f} s: {args.records / elapsed:,.0f} records/s, "
          f"peak importer RSS {peak_rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
