"""The shipped nginx configuration (deploy/nginx/tessera.conf.template) in front of a live hub:
Debian's nginx, run as the current user from a temporary prefix, ends TLS (a self-signed certificate
made here) on a free port and proxies to ``tessera serve`` running with ``TESSERA_TRUSTED_PROXIES=1``.

What the hub must see through it: https on the proxy's host and port (Flask-WTF's referrer check
of the login form passes only then), and the client's own address — even when the client sends an
X-Forwarded-For of its own. The client connects from 127.0.0.5, so that its address differs from the
proxy's (127.0.0.1). Without nginx (``E2E_NGINX``, ``make e2e-deps``) the proxy tests are skipped, and
under ``CI=true`` they fail."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import string
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from requests.adapters import HTTPAdapter

from tests.conftest import IN_CI
from tests.processes import REPO_ROOT, STARTUP_TIMEOUT, TESSERA, Processes, free_port
from tests.test_live_server import (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_LOGIN, DEMO_PASSWORD, DEMO_REDIRECT_URI,
                                    _csrf_token, _env, _follow_inside_hub, _run)

NGINX = os.environ.get("E2E_NGINX") or "/usr/sbin/nginx"
TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "tessera.conf.template"
CLIENT_ADDRESS = "127.0.0.5"  # a loopback address other than the proxy's 127.0.0.1
SPOOFED = "203.0.113.66"      # what a client claims to be (TEST-NET-3)


def _require_nginx() -> None:
    """Skip without nginx — or, under CI=true, fail."""
    if os.access(NGINX, os.X_OK):
        return
    reason = f"!! REVERSE-PROXY TESTS SKIPPED: {NGINX} is not installed (run `make e2e-deps`, i.e. apt-get install nginx)"
    if IN_CI:
        pytest.fail(reason.replace("SKIPPED", "FAILED (CI=true: a CI run must run them)"), pytrace=False)
    pytest.skip(reason)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) that is its own authority: clients trust this file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _nginx_conf(directory: Path, port: int, upstream: str, cert: Path, key: Path) -> Path:
    """The shipped template rendered (as envsubst would) inside a main configuration whose every
    file lives in ``directory``."""
    rendered = string.Template(TEMPLATE.read_text()).safe_substitute(
        TESSERA_PUBLIC_HOST="127.0.0.1", TESSERA_LISTEN=f"127.0.0.1:{port}", TESSERA_TLS_CERTIFICATE=str(cert),
        TESSERA_TLS_CERTIFICATE_KEY=str(key), TESSERA_NODES=f"server {upstream};",
    )
    assert "${TESSERA_" not in rendered
    (directory / "tessera.conf").write_text(rendered)
    temp = {name: directory / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = directory / "nginx.conf"
    main.write_text("\n".join([
        "user root;" if os.geteuid() == 0 else "",  # as root, workers would otherwise become nobody
        "worker_processes 1;",
        f"error_log {directory / 'error.log'} info;",
        "events { worker_connections 128; }",
        "http {",
        f"    access_log {directory / 'access.log'};",
        *(f"    {name}_temp_path {path};" for name, path in temp.items()),
        f"    include {directory / 'tessera.conf'};",
        "}",
    ]))
    return main


def _nginx_args(directory: Path, conf: Path, *extra: str) -> list[str]:
    return [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf),
            "-g", f"daemon off; pid {directory / 'nginx.pid'};", *extra]


class _FromAddress(HTTPAdapter):
    """Connections from a chosen local address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def _client(verify: Path | bool = True) -> requests.Session:
    """A browser at 127.0.0.5 that claims, on every request, to be someone else."""
    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, _FromAddress(CLIENT_ADDRESS))
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override ``verify``, and a proxy variable intervene
    session.verify = verify
    session.headers["X-Forwarded-For"] = SPOOFED
    return session


def _login_page(browser: requests.Session, issuer: str) -> requests.Response:
    oauth = OAuth2Session(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, scope="openid", redirect_uri=DEMO_REDIRECT_URI,
                          code_challenge_method="S256")
    url, _ = oauth.create_authorization_url(f"{issuer}/authorize", nonce=generate_token(20),
                                            code_verifier=generate_token(48))
    page = _follow_inside_hub(browser, browser.get(url, allow_redirects=False, timeout=10), issuer)
    assert page.status_code == 200 and 'name="password"' in page.text, (page.status_code, page.url)
    return page


def _submit_login(browser: requests.Session, page: requests.Response, referer: str) -> requests.Response:
    form = {"csrf_token": _csrf_token(page.text), "login": DEMO_LOGIN, "password": DEMO_PASSWORD, "submit": "Log in"}
    return browser.post(page.url, data=form, headers={"Referer": referer}, allow_redirects=False, timeout=30)


def _login_addresses(workdir: Path, env: dict) -> list[str]:
    """The client address of every successful login, newest first (``tessera audit search``)."""
    result = subprocess.run([TESSERA, "audit", "search", "--kind", "login.success", "--json"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["ip_address"] for line in result.stdout.splitlines() if line.strip()]


def _start_nginx(processes: Processes, directory: Path, conf: Path, port: int):
    checked = subprocess.run(_nginx_args(directory, conf, "-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the rendered template:\n{checked.stderr}"
    proxy = processes.start("nginx", _nginx_args(directory, conf))
    _wait_for(processes, proxy, lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
              f"nginx on port {port}")
    return proxy


def _wait_for(processes: Processes, proc, check, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited with {proc.popen.returncode}:\n{processes.logs()}")
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {STARTUP_TIMEOUT} s:\n{processes.logs()}")
        time.sleep(0.2)


@dataclass
class Deployment:
    issuer: str   # the proxy: https://127.0.0.1:<port>
    node: str     # the hub node itself: http://127.0.0.1:<port>
    cert: Path
    workdir: Path
    env: dict


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _require_nginx()
    workdir = tmp_path_factory.mktemp("proxied-hub")
    cert, key = _self_signed(workdir)
    port, hub_port = free_port(), free_port()
    issuer = f"https://127.0.0.1:{port}"
    env = dict(_env(workdir, issuer), TESSERA_ENV="production", TESSERA_TRUSTED_PROXIES="1")
    _run(["db", "upgrade"], workdir, env)
    _run(["demo", "seed"], workdir, env)
    conf = _nginx_conf(workdir, port, f"127.0.0.1:{hub_port}", cert, key)

    processes = Processes(workdir, env)
    try:
        hub = processes.start("serve", [TESSERA, "serve", "--host", "127.0.0.1", "--port", str(hub_port),
                                        "--workers", "1"])
        proxy = _start_nginx(processes, workdir, conf, port)
        processes.wait_until_up(hub, f"http://127.0.0.1:{hub_port}/healthz")
        _wait_for(processes, proxy, lambda: requests.get(f"{issuer}/healthz", verify=cert, timeout=5).status_code == 200,
                  "the hub through nginx")
        yield Deployment(issuer, f"http://127.0.0.1:{hub_port}", cert, workdir, env)
    finally:
        processes.stop_all()


def test_discovery_through_the_proxy(deployment):
    with _client(deployment.cert) as browser:
        response = browser.get(f"{deployment.issuer}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == deployment.issuer
    for member in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        assert metadata[member].startswith(deployment.issuer + "/"), (member, metadata[member])
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Request-ID"]  # the hub's own headers pass through


def test_a_login_through_the_proxy_sees_https_on_the_proxys_host_and_the_clients_address(deployment):
    with _client(deployment.cert) as browser:
        page = _login_page(browser, deployment.issuer)
        # Over https Flask-WTF wants the Referer on the request's own scheme, host and port: the hub
        # took X-Forwarded-Proto, -Host and -Port from nginx, so the proxy's origin passes, another fails.
        wrong = _submit_login(browser, page, referer=f"https://127.0.0.1:{free_port()}/")
        assert wrong.status_code == 400 and "referrer does not match" in wrong.text.lower(), wrong.text[:300]
        posted = _submit_login(browser, page, referer=page.url)
        assert posted.status_code in (302, 303), (posted.status_code, posted.text[:500])
        final = _follow_inside_hub(browser, posted, deployment.issuer)
    assert final.headers["Location"].startswith(DEMO_REDIRECT_URI + "?code="), final.headers.get("Location")
    # The login was recorded from the client's address, not the proxy's, nor the one the client made up.
    assert _login_addresses(deployment.workdir, deployment.env)[0] == CLIENT_ADDRESS


def test_metrics_are_scraped_on_the_node_not_through_the_proxy(deployment):
    with _client(deployment.cert) as browser:
        del browser.headers["X-Forwarded-For"]
        assert browser.get(f"{deployment.issuer}/metrics", timeout=10).status_code == 404  # nginx's answer
    assert requests.get(f"{deployment.node}/metrics", timeout=10).status_code == 200  # loopback, on the node


def test_a_node_believes_whoever_connects_to_it(deployment):
    """Why only the proxy may reach a node: with TESSERA_TRUSTED_PROXIES=1 a node takes the last
    X-Forwarded-For hop of any caller for the client's address (here: not a local one)."""
    forwarded = requests.get(f"{deployment.node}/metrics", headers={"X-Forwarded-For": SPOOFED}, timeout=10)
    assert forwarded.status_code == 404


def test_without_trusted_proxies_a_forwarded_address_is_not_believed(tmp_path):
    """A hub reached directly (TESSERA_TRUSTED_PROXIES=0, the default) records the connection's
    address whatever X-Forwarded-For says, and a forwarded request never counts as a local caller
    of /metrics (app/web.py)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, issuer)
    assert "TESSERA_TRUSTED_PROXIES" not in env
    _run(["db", "upgrade"], tmp_path, env)
    _run(["demo", "seed"], tmp_path, env)
    processes = Processes(tmp_path, env)
    try:
        hub = processes.start("serve", [TESSERA, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"])
        processes.wait_until_up(hub, f"{issuer}/healthz")
        with _client() as browser:
            page = _login_page(browser, issuer)
            final = _follow_inside_hub(browser, _submit_login(browser, page, referer=page.url), issuer)
            assert final.headers["Location"].startswith(DEMO_REDIRECT_URI + "?code="), final.headers.get("Location")
            assert browser.get(f"{issuer}/metrics", timeout=10).status_code == 404  # X-Forwarded-For sent
            del browser.headers["X-Forwarded-For"]
            assert browser.get(f"{issuer}/metrics", timeout=10).status_code == 200  # 127.0.0.5 is loopback
    finally:
        processes.stop_all()
    assert _login_addresses(tmp_path, env) == [CLIENT_ADDRESS]


def test_what_the_proxy_tells_a_node(tmp_path):
    """The headers the shipped configuration sends upstream, read by a recording node: the client's
    address written afresh (its own X-Forwarded-For replaced, not appended to), https, the public
    host and port; a client's X-Forwarded-Prefix, Forwarded and trace context dropped."""
    _require_nginx()
    received: list[dict] = []

    class Node(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the proxy keeps connections to the nodes alive

        def do_GET(self):  # noqa: N802
            received.append({name.lower(): value for name, value in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    node = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    cert, key = _self_signed(tmp_path)
    port = free_port()
    conf = _nginx_conf(tmp_path, port, f"127.0.0.1:{node.server_port}", cert, key)
    processes = Processes(tmp_path, dict(os.environ))
    try:
        _start_nginx(processes, tmp_path, conf, port)
        with _client(cert) as browser:
            response = browser.get(f"https://127.0.0.1:{port}/authorize?x=1", timeout=10, headers={
                "X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "1",
                "X-Forwarded-Prefix": "/evil", "Forwarded": f"for={SPOOFED}",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "vendor=1", "baggage": "user=someone"})
        assert response.status_code == 200 and response.text == "ok"
    finally:
        processes.stop_all()
        node.shutdown()
        node.server_close()
    [headers] = received
    assert headers["x-forwarded-for"] == CLIENT_ADDRESS  # the client sent X-Forwarded-For: 203.0.113.66
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "127.0.0.1" and headers["host"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(port)
    for dropped in ("x-forwarded-prefix", "forwarded", "traceparent", "tracestate", "baggage"):
        assert dropped not in headers, (dropped, headers[dropped])
