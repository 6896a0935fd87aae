"""`make bench`: throughput, latency and cost per server CPU-second of the hub's hot paths.

1. drops and recreates the PostgreSQL database ``tessera_bench``, runs ``tessera db upgrade`` and
   seeds a tenant, users and four clients (bench/seed.py, through the app's services);
2. serves a bare Flask app (bench/hello_app.py) and then the hub (wsgi:app), each with gunicorn,
   ONE sync worker, pinned to core 0 (``taskset -c 0``); the driver runs on core 1;
3. per scenario: warm-up, then a fixed measured window (closed loop: peak throughput), and for
   some scenarios an open-loop run at 70 % of that peak for the p99 latency;
4. prints a table and writes bench/results/latest.json.

Environment: BENCH_SECONDS (10), BENCH_WARMUP (3), BENCH_CONCURRENCY (4), BENCH_USERS (200),
BENCH_SCENARIOS (comma list, default all), BENCH_OPEN_LOOP (scenarios measured at 70 %, default
every hub scenario), BENCH_PG (postgresql://postgres@127.0.0.1:5432),
BENCH_DB (tessera_bench), BENCH_PORT (8741), BENCH_HELLO_PORT (8742).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import scenarios  # noqa: E402
from httpclient import Client  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
USERS = int(os.environ.get("BENCH_USERS", "200"))
OPEN_LOOP_THREADS = int(os.environ.get("BENCH_OPEN_LOOP_THREADS", "16"))
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB = os.environ.get("BENCH_DB", "tessera_bench")
PORT = int(os.environ.get("BENCH_PORT", "8741"))
HELLO_PORT = int(os.environ.get("BENCH_HELLO_PORT", "8742"))
HOST = "127.0.0.1"
SERVER_CORE, DRIVER_CORE = "0", 1

# key: (label, factory, target ops per server CPU-second, HTTP requests per operation)
SCENARIOS = {
    "login": ("(a) password login flow", scenarios.login_flow, 40, 6),
    "sso": ("(b) SSO'd code+PKCE flow", scenarios.sso_flow, 400, 3),
    "refresh": ("(c) refresh grant (rotation)", scenarios.refresh_grant, 800, 1),
    "client_credentials": ("(d) client credentials", scenarios.client_credentials, 1500, 1),
    "userinfo": ("(e) userinfo", scenarios.userinfo, 2000, 1),
    "introspection": ("(f) introspection", scenarios.introspection, 2000, 1),
    "partner_batch": ("(g) partner batch read (100 users)", scenarios.partner_batch, None, 1),
    "hello": ("(h) bare Flask hello (ceiling)", None, None, 1),
}
ORDER = ["hello", "userinfo", "introspection", "client_credentials", "refresh", "sso", "login", "partner_batch"]
P99_TARGET_MS = 50
OPEN_LOOP_DEFAULT = [k for k in ORDER if k != "hello"]
RSS_TARGET_MB = 120


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- database and seed ----------------------------------------------------------------------------
def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')


def hub_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=f"{PG}/{DB}",
        TESSERA_ISSUER=f"http://{HOST}:{PORT}",
        TESSERA_SECRET_KEY="bench-secret-key-0123456789abcdef0123456789abcdef",
        TESSERA_RATE_LIMITS_ENABLED="0",  # the benchmark only: it measures the work, not the limiter
        TESSERA_INSTANCE_DIR=str(RESULTS / "instance"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def tessera(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("tessera")), *args], cwd=ROOT, env=hub_env(), check=True,
                   stdout=subprocess.DEVNULL)


def seed() -> dict:
    out = subprocess.run([sys.executable, str(HERE / "seed.py"), str(USERS)], cwd=ROOT, env=hub_env(), check=True,
                         capture_output=True, text=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seed.json").write_text(json.dumps(data))  # bench/profile.py drives the same seed
    return data


# --- servers --------------------------------------------------------------------------------------
class Gunicorn:
    """gunicorn with one sync worker, pinned to SERVER_CORE."""

    def __init__(self, app: str, port: int, chdir: Path, env: dict, name: str):
        self.port, self.name = port, name
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log = open(RESULTS / f"{name}.log", "wb")
        cmd = ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "gunicorn", "--workers", "1",
               "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--backlog", "2048", "--timeout", "120",
               "--chdir", str(chdir), app]
        self.proc = subprocess.Popen(cmd, cwd=chdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        client = Client(HOST, self.port, timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if client.get(path).status == 200 and self.worker_pids():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout}s")

    def worker_pids(self) -> list[int]:
        return loadgen.children_of(self.proc.pid)

    def memory(self) -> dict:
        pids = self.worker_pids()
        return {
            "worker_vmhwm_mb": round(sum(loadgen.status_kb(p, "VmHWM") for p in pids) / 1024, 1),
            "worker_vmrss_mb": round(sum(loadgen.status_kb(p, "VmRSS") for p in pids) / 1024, 1),
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def db_backend_pids():
    """PostgreSQL backends connected to the benchmark database (the worker's pooled connection)."""
    import psycopg

    conn = psycopg.connect(f"{PG}/{DB}", autocommit=True)

    def pids() -> list[int]:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'", (DB,)).fetchall()
        return [r[0] for r in rows]
    return pids, conn


# --- machine --------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    import psycopg

    with psycopg.connect(f"{PG}/postgres", connect_timeout=5) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "migrations", "templates"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu_model": cpu, "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "postgresql": pg_version, "python": platform.python_version(), "kernel": platform.release(),
        "git_commit": commit + ("+dirty" if dirty else ""), "loadavg_at_start": loadavg,
    }


# --- output ---------------------------------------------------------------------------------------
def fmt(value, digits=1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict) -> str:
    head = ("| scenario | ops/s | p50 ms | p99 ms | ops per server CPU-s | target | server CPU util | "
            "DB CPU ms/op | worker peak RSS MB | errors |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in ORDER:
        r = results.get(key)
        if r is None:
            continue
        label, _, target, _ = SCENARIOS[key]
        ok = ""
        if target and r.get("ops_per_cpu_s") is not None:
            ok = " ✅" if r["ops_per_cpu_s"] >= target else " ❌"
        lines.append(
            f"| {label} | {fmt(r['throughput'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
            f"**{fmt(r['ops_per_cpu_s'])}**{ok} | {'≥ ' + format(target, ',') if target else '—'} | "
            f"{fmt(r['server_cpu_util'], 2)} | {fmt(r['db_cpu_ms_per_op'], 2)} | {fmt(r['worker_vmhwm_mb'])} | "
            f"{r['errors']} |")
    return "\n".join(lines)


def p99_table(open_loop: dict) -> str:
    lines = ["| scenario at 70 % of peak | offered ops/s | achieved ops/s | p50 ms | p99 ms | target p99 |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, r in open_loop.items():
        ok = " ✅" if r["p99_ms"] is not None and r["p99_ms"] <= P99_TARGET_MS else " ❌"
        lines.append(f"| {SCENARIOS[key][0]} | {fmt(r['offered_rate'])} | {fmt(r['throughput'])} | "
                     f"{fmt(r['p50_ms'], 2)} | **{fmt(r['p99_ms'], 2)}**{ok} | ≤ {P99_TARGET_MS} |")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------
def main() -> int:
    wanted = [s for s in os.environ.get("BENCH_SCENARIOS", ",".join(ORDER)).split(",") if s]
    open_loop_keys = [s for s in os.environ.get("BENCH_OPEN_LOOP", ",".join(OPEN_LOOP_DEFAULT)).split(",")
                      if s and s in wanted]
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    log(f"{info['nproc']} cores, {info['cpu_model']}, PostgreSQL {info['postgresql']}; "
        f"{SECONDS:g}s per scenario after {WARMUP:g}s warm-up, {CONCURRENCY} driver threads")
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {DRIVER_CORE})  # the driver (and setup) stays off the server's core
    else:
        log("only one core: server and driver share it; the numbers are not comparable")

    results: dict = {}
    open_loop: dict = {}

    if "hello" in wanted:
        hello = Gunicorn("hello_app:app", HELLO_PORT, HERE, hub_env(), "hello")
        try:
            hello.wait_ready("/hello")
            client = Client(HOST, HELLO_PORT)
            meter = loadgen.Meter(hello.worker_pids)
            log("hello: running")
            r = loadgen.closed_loop(scenarios.hello(client, CONCURRENCY), meter, WARMUP, SECONDS)
            results["hello"] = dict(r.summary(), **hello.memory())
        finally:
            hello.stop()

    log(f"recreating database {DB}, migrating, seeding {USERS} users")
    recreate_database()
    tessera("db", "upgrade")
    seed_data = seed()
    hub = Gunicorn("wsgi:app", PORT, ROOT, hub_env(), "hub")
    db_pids, db_conn = None, None
    try:
        hub.wait_ready("/.well-known/openid-configuration")
        db_pids, db_conn = db_backend_pids()
        hub_view = scenarios.Hub(Client(HOST, PORT), seed_data)
        meter = loadgen.Meter(hub.worker_pids, db_pids)
        for key in ORDER:
            if key not in wanted or key == "hello":
                continue
            label, factory, _, _ = SCENARIOS[key]
            log(f"{key}: setting up {CONCURRENCY} driver threads")
            ops = factory(hub_view, CONCURRENCY)
            log(f"{key}: running")
            r = loadgen.closed_loop(ops, meter, WARMUP, SECONDS)
            results[key] = dict(r.summary(), **hub.memory())
            s = results[key]
            log(f"{key}: {s['throughput']} ops/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
                f"{s['ops_per_cpu_s']} ops/CPU-s, errors {s['errors']}"
                + (f" (first: {s['first_error']})" if s["first_error"] else ""))

        for key in open_loop_keys:
            peak = results.get(key, {}).get("throughput")
            if not peak:
                continue
            rate = 0.7 * peak
            label, factory, _, _ = SCENARIOS[key]
            log(f"{key}: open loop at {rate:.0f} ops/s (70 % of {peak}), setting up {OPEN_LOOP_THREADS} threads")
            ops = factory(hub_view, OPEN_LOOP_THREADS)
            r = loadgen.open_loop(ops, meter, rate, min(WARMUP, 2.0), SECONDS)
            open_loop[key] = r.summary()
            log(f"{key} @70%: {open_loop[key]['throughput']} ops/s, p50 {open_loop[key]['p50_ms']} ms, "
                f"p99 {open_loop[key]['p99_ms']} ms, errors {open_loop[key]['errors']}")
        final_memory = hub.memory()
    finally:
        if db_conn is not None:
            db_conn.close()
        hub.stop()

    report = {
        "machine": info,
        "settings": {"seconds": SECONDS, "warmup": WARMUP, "concurrency": CONCURRENCY, "users": USERS,
                     "open_loop_threads": OPEN_LOOP_THREADS, "server": "gunicorn, 1 sync worker, taskset -c 0",
                     "driver": "bench/loadgen.py, threads, raw HTTP/1.1, taskset -c 1"},
        "targets": {k: SCENARIOS[k][2] for k in SCENARIOS if SCENARIOS[k][2]},
        "requests_per_op": {k: SCENARIOS[k][3] for k in SCENARIOS},
        "results": results,
        "p99_at_70pct": open_loop,
        "hub_worker_memory_after_run": final_memory,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    with open("/proc/loadavg") as f:
        report["loadavg_at_end"] = " ".join(f.read().split()[:3])
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(f"Machine: {info['nproc']} cores, {info['cpu_model']}, {info['ram_gb']} GB RAM, PostgreSQL "
          f"{info['postgresql']}, Python {info['python']}, {info['date']}, commit {info['git_commit']}, "
          f"load average {info['loadavg_at_start']} → {report['loadavg_at_end']}")
    print(f"Server: gunicorn, 1 sync worker on core 0; driver on core 1; {SECONDS:g}s measured after {WARMUP:g}s warm-up")
    print()
    print(table(results))
    print()
    if open_loop:
        print(p99_table(open_loop))
        print()
    rss = final_memory["worker_vmrss_mb"]
    print(f"Hub worker memory after the run: RSS {rss} MB, peak {final_memory['worker_vmhwm_mb']} MB "
          f"(target ≤ {RSS_TARGET_MB} MB) {'✅' if rss <= RSS_TARGET_MB else '❌'}")
    print(f"Wrote {RESULTS / 'latest.json'} in {report['elapsed_s']}s")
    failed = [k for k, r in results.items() if r.get("errors")]
    if failed:
        print(f"!! errors in: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
