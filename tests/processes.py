"""Live processes for the tests that need real sockets (a hub under `tessera serve`, its worker,
demo sites): start them in their own process groups, wait until they answer, stop every one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

TESSERA = str(Path(sys.executable).with_name("tessera"))
REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])


class Processes:
    def __init__(self, workdir: Path, env: dict):
        self.workdir, self.env = workdir, env
        self.procs: list[Proc] = []

    def start(self, name: str, args: list[str], cwd: Path = REPO_ROOT) -> Proc:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            # Its own process group: gunicorn's workers go down with it.
            popen = subprocess.Popen(args, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def logs(self, lines: int = 40) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)

    def wait_until_up(self, proc: Proc, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode} before answering:\n{proc.tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {STARTUP_TIMEOUT} s:\n{proc.tail()}")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            kill_group(proc.popen, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            kill_group(proc.popen, signal.SIGKILL)  # stragglers of the group (gunicorn workers)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)


def kill_group(popen: subprocess.Popen, sig) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)




@contextlib.contextmanager
def tessera_server(workdir: Path, env: dict, port: int, cwd: Path = REPO_ROOT):
    """`tessera serve` (one gunicorn worker) on ``port`` until discovery answers; always stopped."""
    processes = Processes(workdir, env)
    issuer = env["TESSERA_ISSUER"]
    try:
        server = processes.start("serve", [TESSERA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                 cwd=cwd)
        processes.wait_until_up(server, f"{issuer}/.well-known/openid-configuration")
        yield issuer
    finally:
        processes.stop_all()
