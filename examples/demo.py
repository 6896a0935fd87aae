"""``make demo``: migrate and seed the hub's database (and a second account for the merge demo),
register Site A and Site B with their events endpoints, start the hub
(and its outbox worker when the hub has one) and both sites, print their URLs, and stop them all
on Ctrl-C.

Environment: ``HOST``/``PORT`` for the hub (default 127.0.0.1:5000), ``SITE_A_PORT`` (5001) and
``SITE_B_PORT`` (5002). Site A lives on http://127.0.0.1, Site B on http://localhost: two
different sites for the browser's cookies, as two subsidiaries' domains would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from examples.demo_setup import DEFAULT_SITES

ROOT = Path(__file__).resolve().parent.parent
TESSERA = str(Path(sys.executable).with_name("tessera"))
#: The second demo account (the merge demo folds it into the first one).
SECOND_USER = ("+14155550124", "second-password")


def _run(args: list[str], env: dict) -> None:
    print("$ tessera " + " ".join(args), flush=True)
    subprocess.run([TESSERA, *args], cwd=ROOT, env=env, check=True)


def has_command(name: str, env: dict) -> bool:
    result = subprocess.run([TESSERA, name, "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    return result.returncode == 0


def _wait_for(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C, `kill` and a closed terminal all stop every process; set explicitly because a
    # process started in the background inherits an *ignored* SIGINT.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000"))
    issuer = os.environ.get("TESSERA_ISSUER") or f"http://{host}:{port}"
    env = dict(os.environ, TESSERA_ISSUER=issuer, TESSERA_ALLOW_PRIVATE_OUTBOUND="1")
    ports = {"site-a": int(os.environ.get("SITE_A_PORT", "5001")), "site-b": int(os.environ.get("SITE_B_PORT", "5002"))}
    sites = []
    for spec in DEFAULT_SITES:
        spec = dict(spec)
        scheme_host = spec["base_url"].rsplit(":", 1)[0]
        spec["base_url"] = f"{scheme_host}:{ports[spec['client_id']]}"
        sites.append(spec)

    _run(["db", "upgrade"], env)
    _run(["demo", "seed"], env)
    subprocess.run([sys.executable, "-m", "examples.demo_setup", "--sites-json", json.dumps(sites)],
                   cwd=ROOT, env=env, check=True)
    # a second person-to-be for the merge demo (examples/README.md); kept when it exists
    second = subprocess.run([TESSERA, "users", "create", "--phone", SECOND_USER[0], "--password", SECOND_USER[1],
                             "--name", "Second Demo Account"], cwd=ROOT, env=env, capture_output=True, text=True)
    if second.returncode == 0:
        print(f"created the second demo account {SECOND_USER[0]}")

    procs: list[subprocess.Popen] = []

    def start(args: list[str]) -> None:
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True))

    try:
        start([TESSERA, "serve", "--host", host, "--port", str(port)])
        if has_command("worker", env):
            start([TESSERA, "worker"])
        else:
            print("(this hub has no `tessera worker`: back-channel logout depends on the hub's own delivery)")
        for spec in sites:
            start([sys.executable, "-m", "examples.rp_site", "--port", spec["base_url"].rsplit(":", 1)[1],
                   "--base-url", spec["base_url"], "--name", spec["name"], "--color", spec["color"],
                   "--issuer", issuer, "--client-id", spec["client_id"], "--client-secret", spec["client_secret"]])
        _wait_for(f"{issuer}/.well-known/openid-configuration")
        for spec in sites:
            _wait_for(f"{spec['base_url']}/healthz", timeout=20)
        print("\n" + "=" * 64)
        print(f"  Hub:     {issuer}")
        for spec in sites:
            print(f"  {spec['name']}:  {spec['base_url']}/   (client {spec['client_id']}, tenant {spec['tenant']})")
        print("  User:    +14155550123 / demo-password")
        print(f"  User 2:  {SECOND_USER[0]} / {SECOND_USER[1]}   (merge demo: examples/README.md)")
        print("  Ctrl-C stops everything.")
        print("=" * 64 + "\n", flush=True)
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"!! {' '.join(proc.args[:3])} exited with {proc.returncode}; stopping the demo")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…")
        return 0
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    sys.exit(main())
