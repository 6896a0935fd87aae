"""Outbound calls (``app.net.fetch``) reach only the addresses vetted when the URL's host was
resolved: DNS rebinding, IPv6 forms that carry a private IPv4 address, TLS to the pinned address
under the URL's name.

The name service is the one thing replaced (``socket.getaddrinfo``, the OS resolver): names
answer what each test says, one answer per lookup. So that no test sends a packet off this machine,
whatever the code under test does, a lookup of any address but loopback fails and sockets refuse to
connect anywhere but loopback (``GuardedSocket``). Everything above them — requests, urllib3, the
pinned connection, the real servers on 127.0.0.1 — is the production code.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.events.models import OutboxEvent
from app.extensions import db
from app.net import OutboundError, fetch
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from

#: A global address the test resolver hands out; it is never connected to (see FakeDNS).
PUBLIC = "93.184.215.14"

_real_getaddrinfo = socket.getaddrinfo


class FakeDNS:
    """``socket.getaddrinfo`` with scripted answers: ``answers[name]`` is a list of answers (each a
    list of addresses) given one per lookup, the last one repeated. Numeric hosts resolve to
    themselves, but only loopback ones: a connection to any other address fails here."""

    def __init__(self):
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 (socket's names)
        host = host.decode() if isinstance(host, bytes) else host
        self.lookups.append(host)
        try:
            numeric = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            numeric = None
        if numeric is not None:
            if not numeric.is_loopback:
                raise socket.gaierror(socket.EAI_NONAME, f"test resolver: no traffic to {host}")
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, f"test resolver: {host} is unknown")
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


class GuardedSocket(socket.socket):
    """A socket that connects to loopback addresses only."""

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(
                address[0].split("%")[0]).is_loopback:
            raise OSError(errno.ENETUNREACH, f"test guard: no traffic to {address[0]}")
        return super().connect(address)


@pytest.fixture
def dns(monkeypatch):
    resolver = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(socket, "socket", GuardedSocket)
    return resolver


@pytest.fixture
def public_only(app, monkeypatch):
    """Production rules: only public addresses (the suite's default allows private ones)."""
    monkeypatch.setitem(app.config, "TESSERA_ALLOW_PRIVATE_OUTBOUND", False)


class Victim:
    """A service on 127.0.0.1 that must never be reached: counts every TCP connection and every
    HTTP request (with its Host header), answers 200 "internal"."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.connections = 0
        self.requests: list[dict] = []
        victim = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self):
                victim.connections += 1
                super().setup()

            def do_GET(self):  # noqa: N802
                victim.requests.append({"path": self.path, "host": self.headers.get("Host")})
                body = b"internal"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def victim():
    v = Victim()
    yield v
    v.close()


# --- DNS rebinding -------------------------------------------------------------------------------

def test_rebinding_name_never_reaches_loopback(ctx, dns, public_only, victim):
    """The name answers a public address to the check and 127.0.0.1 to any later lookup: the
    connection goes to the vetted address (which fails here) and the loopback service sees nothing."""
    dns.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with pytest.raises(OutboundError, match=PUBLIC):
        fetch("GET", f"http://rebind.test:{victim.port}/admin")
    assert victim.connections == 0 and victim.requests == []
    assert dns.lookups == ["rebind.test", PUBLIC]  # one lookup of the name, then the pinned address


def test_rebinding_through_backchannel_logout(app, factories, http, browser, dns, public_only, victim):
    """A relying party registers a back-channel logout URI on a name it controls and rebinds it to
    the hub's loopback once the address was checked: the logout token is never delivered there."""
    account = factories.account()
    client = factories.client(redirect_uri="https://rp.example.com/cb", trusted=True,
                              backchannel_logout_uri=f"https://rebind.test:{victim.port}/bc")
    rp = RelyingParty.for_client(http, ISSUER, client)
    request, response = authorize(browser, rp, account)
    tokens = rp.exchange(code_from(response, request), request).get_json()
    assert browser.http.get("/logout", query_string={"id_token_hint": tokens["id_token"]}).status_code == 200

    dns.answers["rebind.test"] = [[PUBLIC], ["127.0.0.1"]]
    with app.app_context():
        from app.worker import run_once

        assert run_once() == 1
        event = db.session.scalar(db.select(OutboxEvent).filter_by(url=f"https://rebind.test:{victim.port}/bc"))
        assert event.status == "pending" and PUBLIC in event.last_error
    assert victim.connections == 0


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "::7f00:1",            # IPv4-compatible ::127.0.0.1
    "::a9fe:a9fe",         # IPv4-compatible ::169.254.169.254
    "::808:808",           # IPv4-compatible, even of a public address (deprecated form)
    "::ffff:127.0.0.1",    # IPv4-mapped
    "::ffff:a9fe:a9fe",    # IPv4-mapped 169.254.169.254
    "64:ff9b::7f00:1",     # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",      # NAT64 of 10.0.0.1
    "64:ff9b:1::a00:1",    # local-use NAT64
    "2002:7f00:1::",       # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",    # 6to4 of 192.168.1.1
    "2001:db8::1",         # documentation
])
def test_non_public_addresses_are_refused(ctx, dns, public_only, address):
    dns.answers["evil.test"] = [[address]]
    with pytest.raises(OutboundError, match="non-public address"):
        fetch("GET", "http://evil.test/")
    assert dns.lookups == ["evil.test"]  # refused before any connection


def test_one_bad_address_among_good_ones_is_refused(ctx, dns, public_only):
    dns.answers["mixed.test"] = [[PUBLIC, "10.0.0.1"]]
    with pytest.raises(OutboundError, match=r"non-public address \(10\.0\.0\.1\)"):
        fetch("GET", "http://mixed.test/")


@pytest.mark.parametrize("address", [PUBLIC, "::ffff:93.184.215.14", "64:ff9b::5db8:d70e", "2002:5db8:d70e::1",
                                     "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass_the_check(ctx, dns, public_only, address):
    """Vetted, then connected to (which the test resolver refuses: nothing leaves the machine)."""
    dns.answers["public.test"] = [[address]]
    with pytest.raises(OutboundError, match="failed"):
        fetch("GET", "http://public.test/")
    assert dns.lookups == ["public.test", address]


def test_pinned_connection_keeps_the_host_header(ctx, dns, victim):
    """With private addresses allowed (tests, ``make run``) the connection is pinned just the same:
    a second lookup of the name would fail here, and the Host header is the URL's."""
    dns.answers["rp.test"] = [["127.0.0.1"], []]
    response = fetch("GET", f"http://rp.test:{victim.port}/hello")
    assert response.status_code == 200 and response.text == "internal"
    assert victim.requests == [{"path": "/hello", "host": f"rp.test:{victim.port}"}]
    assert dns.lookups == ["rp.test", "127.0.0.1"]


# --- TLS to the pinned address -------------------------------------------------------------------

def _certificate(tmp_path, name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.fixture
def tls_victim(tmp_path):
    cert_file, key_file = _certificate(tmp_path, "rp.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server_names = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    v = Victim(context)
    v.server_names, v.cert_file = server_names, cert_file
    yield v
    v.close()


def test_tls_to_the_pinned_address_checks_the_urls_name(ctx, dns, tls_victim):
    dns.answers["rp.test"] = [["127.0.0.1"], []]
    response = fetch("GET", f"https://rp.test:{tls_victim.port}/x", verify=tls_victim.cert_file)
    assert response.status_code == 200
    assert tls_victim.server_names == ["rp.test"]  # SNI is the URL's name, not the address
    assert tls_victim.requests == [{"path": "/x", "host": f"rp.test:{tls_victim.port}"}]


def test_tls_certificate_of_another_name_is_refused(ctx, dns, tls_victim):
    """The name that resolved to the pinned address must be the one on the certificate."""
    dns.answers["other.test"] = [["127.0.0.1"]]
    with pytest.raises(OutboundError, match="certificate"):
        fetch("GET", f"https://other.test:{tls_victim.port}/x", verify=tls_victim.cert_file)
    assert tls_victim.requests == []


def test_proxies_from_the_environment_are_ignored(ctx, dns, victim, monkeypatch):
    """An HTTP(S)_PROXY in the environment would move the connection elsewhere (and the proxy would
    resolve the name again): fetch ignores it."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    dns.answers["rp.test"] = [["127.0.0.1"]]
    assert fetch("GET", f"http://rp.test:{victim.port}/p").status_code == 200
    assert "proxy.test" not in dns.lookups and victim.requests[0]["path"] == "/p"
