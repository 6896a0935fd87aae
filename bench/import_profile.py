"""Where an import's CPU goes: one ``tessera import run`` (or n shards) of a file into a fresh
PostgreSQL database, with the importers' CPU time (user + sys, from rusage) and the CPU of their
PostgreSQL backends (read from /proc while they live), per record.

    python bench/import_profile.py FILE [--shards 1] [--batch-size 5000] [--cprofile OUT.prof]

Uses $BENCH_PG (default postgresql://postgres@127.0.0.1:5432) and the database
``tessera_import_profile`` (dropped and recreated). PostgreSQL must run on this machine. With
``--cprofile`` the first shard runs under cProfile (slower; the split is what matters).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_bench import TESSERA, _cpu_seconds, _env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--cprofile")
    args = parser.parse_args()

    server = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
    name = "tessera_import_profile"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = _env(f"{server}/{name}")
    subprocess.run([TESSERA, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([TESSERA, "tenants", "create", "--slug", "legacy", "--name", "Legacy"], env=env, check=True,
                   capture_output=True)

    backends: dict[int, float] = {}
    importers: dict[int, float] = {}
    processes: list[subprocess.Popen] = []
    done = threading.Event()

    def watch() -> None:  # the CPU of this database's backends, last seen value per backend
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            while not done.is_set():
                for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)):
                    cpu = _cpu_seconds(pid)
                    if cpu is not None:
                        backends[pid] = cpu
                for process in list(processes):
                    cpu = _cpu_seconds(process.pid)
                    if cpu is not None:
                        importers[process.pid] = cpu
                time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    load_before = os.getloadavg()
    started = time.monotonic()
    for i in range(args.shards):
        command = [TESSERA]
        if args.cprofile and i == 0:
            command = [sys.executable, "-m", "cProfile", "-o", args.cprofile, TESSERA]
        command += ["import", "run", args.file, "--tenant", "legacy", "--batch-size", str(args.batch_size),
                    "--shard", f"{i}/{args.shards}", "--json"]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    replays = 0
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"import failed ({process.returncode}): {err[-2000:]}")
        replays += err.count("lost a race")
    elapsed = time.monotonic() - started
    done.set()
    watcher.join()
    with psycopg.connect(f"{server}/{name}") as conn:
        records = conn.execute("SELECT sum((counters->>'read')::int) FROM import_jobs WHERE mode = 'run'").fetchone()[0]
    python_cpu = sum(importers.values())  # last seen, ≤ 0.2 s short per process
    pg_cpu = sum(backends.values())
    print(f"records {records:,}  wall {elapsed:.1f} s  ({records / elapsed:,.0f}/s)  load {load_before[0]:.2f}")
    print(f"importer CPU {python_cpu:.1f} s = {python_cpu / records * 1e6:.0f} µs/record")
    print(f"batches replayed after a lost race: {replays}")
    print(f"PostgreSQL backends CPU {pg_cpu:.1f} s = {pg_cpu / records * 1e6:.0f} µs/record")


if __name__ == "__main__":
    main()
