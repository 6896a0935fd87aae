"""A green `make test` means what it says: under CI=true a PostgreSQL that cannot be reached, or a
Chromium or an nginx that cannot be installed, fails the run (and the browser and reverse-proxy tests
fail rather than skip); on a developer's machine they stay friendly warnings. Runs make and pytest as
CI does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.processes import REPO_ROOT, free_port

NO_CHROMIUM = "/nonexistent/chromium"
NO_NGINX = "/nonexistent/nginx"
#: Stands in for a browser or an nginx that is there (so that `make e2e-deps` installs nothing).
PRESENT = shutil.which("true")


def _env(ci: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "E2E_CHROMIUM", "E2E_NGINX")}
    if ci:
        env["CI"] = "true"
    return env


def _make(*args: str, ci: bool) -> subprocess.CompletedProcess:
    # -o install: the virtualenv is there; never reinstall it from a test.
    return subprocess.run(["make", "--no-print-directory", "-o", "install", *args], cwd=REPO_ROOT, env=_env(ci),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_unreachable_postgresql_fails_only_under_ci(ci):
    result = _make("test-postgres", f"PG_TEST_URL=postgresql://postgres@127.0.0.1:{free_port()}/nowhere", ci=ci)
    output = result.stdout + result.stderr
    if ci:
        assert result.returncode != 0 and "CI=true and PostgreSQL is not reachable" in output, output
    else:
        assert result.returncode == 0 and "the PostgreSQL run was SKIPPED" in output, output


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_missing_chromium_fails_only_under_ci(ci):
    result = _make("e2e-deps", f"CHROMIUM={NO_CHROMIUM}", f"NGINX={PRESENT}", ci=ci)
    output = result.stdout + result.stderr
    if ci:
        assert result.returncode != 0 and "FAILING" in output, output
    else:
        assert result.returncode == 0 and "the e2e tests will be SKIPPED" in output, output


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_browser_tests_fail_rather_than_skip_under_ci(ci):
    env = dict(_env(ci), E2E_CHROMIUM=NO_CHROMIUM)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                             "tests/e2e/test_sso.py", "-k", "idle_expired"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    if ci:
        assert result.returncode == 1 and "FAILED (CI=true" in output, output
    else:
        assert result.returncode == 0 and "1 skipped" in output, output


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_missing_nginx_fails_only_under_ci(ci):
    result = _make("e2e-deps", f"CHROMIUM={PRESENT}", f"NGINX={NO_NGINX}", ci=ci)
    output = result.stdout + result.stderr
    if ci:
        assert result.returncode != 0 and "nginx is missing" in output and "FAILING" in output, output
    else:
        assert result.returncode == 0 and "the reverse-proxy tests will be SKIPPED" in output, output


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_reverse_proxy_tests_fail_rather_than_skip_under_ci(ci):
    env = dict(_env(ci), E2E_NGINX=NO_NGINX)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                             "tests/test_reverse_proxy.py", "-k", "discovery"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    if ci:
        assert result.returncode == 1 and "FAILED (CI=true" in output, output
    else:
        assert result.returncode == 0 and "1 skipped" in output, output
