"""Profile one scenario's server side with py-spy (not needed by `make bench`).

    .venv/bin/pip install py-spy
    make bench                       # leaves tessera_bench seeded; then serve it on BENCH_PORT:
    TESSERA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/tessera_bench \
      TESSERA_ISSUER=http://127.0.0.1:8741 TESSERA_RATE_LIMITS_ENABLED=0 \
      TESSERA_SECRET_KEY=bench-secret-key-0123456789abcdef0123456789abcdef \
      taskset -c 0 .venv/bin/python -m gunicorn --workers 1 --bind 127.0.0.1:8741 wsgi:app &
    .venv/bin/python bench/profile.py userinfo 15      # scenario, seconds

Drives the scenario from core 1 while ``py-spy record`` samples the gunicorn worker (the
process listening on BENCH_PORT whose parent is a gunicorn master) and writes
bench/results/profile-<scenario>.txt: the top functions by own time and by cumulative time
(py-spy's "raw" collapsed stacks, aggregated here), plus the collapsed stacks themselves.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenarios  # noqa: E402
from httpclient import Client  # noqa: E402

PORT = int(os.environ.get("BENCH_PORT", "8741"))


def worker_pid(port: int) -> int:
    """The gunicorn worker serving ``port``: a child of the master that listens on it."""
    out = subprocess.run(["pgrep", "-f", f"gunicorn.*127.0.0.1:{port}"], capture_output=True, text=True).stdout
    pids = {int(p) for p in out.split()}
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        if ppid in pids:
            return pid
    raise SystemExit(f"no gunicorn worker found for port {port}")


def seed_view() -> dict:
    """What bench/run.py's seeding printed (it keeps it in bench/results/seed.json)."""
    return json.loads((HERE / "results" / "seed.json").read_text())


def summarize(raw: Path, out: Path) -> None:
    own, cumulative, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            cumulative[frame] += n
    lines = [f"{total} samples", "", "== own time (top 40) =="]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in own.most_common(40)]
    lines += ["", "== cumulative (top 80) =="]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in cumulative.most_common(80)]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "userinfo"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    factory = {"login": scenarios.login_flow, "sso": scenarios.sso_flow, "refresh": scenarios.refresh_grant,
               "client_credentials": scenarios.client_credentials, "userinfo": scenarios.userinfo,
               "introspection": scenarios.introspection}[name]
    os.sched_setaffinity(0, {1})
    hub = scenarios.Hub(Client("127.0.0.1", PORT), seed_view())
    ops = factory(hub, 4)
    stop = threading.Event()

    def run(op):
        while not stop.is_set():
            op()

    threads = [threading.Thread(target=run, args=(op,), daemon=True) for op in ops]
    for t in threads:
        t.start()
    time.sleep(1)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    raw = results / f"profile-{name}.raw"
    spy = Path(sys.executable).with_name("py-spy")
    subprocess.run([str(spy), "record", "--pid", str(worker_pid(PORT)), "--duration", str(seconds),
                    "--rate", "250", "--format", "raw", "--output", str(raw)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop.set()
    summarize(raw, results / f"profile-{name}.txt")
    print(f"wrote {results / f'profile-{name}.txt'}")


if __name__ == "__main__":
    main()
