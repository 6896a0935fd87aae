"""The transport of ``app.net.fetch``: a requests session whose connections go to addresses vetted
beforehand, never to a second DNS answer (DNS rebinding).

urllib3 resolves a connection's host when it opens the socket (``HTTPConnection._new_conn``). Here
the connection classes open the socket to the pinned addresses instead, in order, and keep
everything else about the host: the URL's host stays the connection's ``host``, so the ``Host``
header, the TLS SNI name and the certificate check are the URL's, as without pinning.

The adapter builds its own connection pools (``get_connection_with_tls_context``, the hook requests
keeps for subclasses) and never uses a proxy; the session ignores the environment (``trust_env``
off: no ``HTTPS_PROXY``, no ``.netrc``), so nothing routes a call around the vetted address.

Imported by ``fetch`` on its first call: requests and urllib3 cost a web worker's memory only in
processes that call out.
"""

from __future__ import annotations

import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.util.connection import create_connection

DEFAULT_PORTS = {"http": 80, "https": 443}
#: What a call can fail with: requests' errors, and urllib3's while the body is read.
TRANSPORT_ERRORS = (requests.RequestException, HTTPError)


class _PinnedConnectionMixin:
    """Opens its socket to ``pinned_addresses`` (tried in order) instead of resolving ``host``."""

    def __init__(self, *args, pinned_addresses: tuple[str, ...], **kwargs):
        self.pinned_addresses = pinned_addresses
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        error: Exception | None = None
        for address in self.pinned_addresses:
            try:
                return create_connection((address, self.port), self.timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError:
                error = ConnectTimeoutError(
                    self, f"connection to {self.host} ({address}) timed out (connect timeout={self.timeout})")
            except OSError as exc:
                error = NewConnectionError(self, f"failed to connect to {self.host} ({address}): {exc}")
        raise error or NewConnectionError(self, f"no address to connect to for {self.host}")


class PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """Every request through this adapter connects to ``addresses`` (vetted by the caller)."""

    def __init__(self, addresses: tuple[str, ...]):
        super().__init__(max_retries=0, pool_connections=1, pool_maxsize=1)
        self.addresses = addresses
        self._pools: list[HTTPConnectionPool] = []

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):  # noqa: ARG002 (no proxy, ever)
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        scheme = host_params["scheme"]
        if scheme not in DEFAULT_PORTS:
            raise requests.exceptions.InvalidURL(f"not an http(s) URL: {request.url}")
        port = host_params["port"] or DEFAULT_PORTS[scheme]
        if scheme == "https":
            pool = PinnedHTTPSConnectionPool(host_params["host"], port, maxsize=1,
                                             pinned_addresses=self.addresses, **pool_kwargs)
        else:  # TLS settings mean nothing to a plain connection
            pool = PinnedHTTPConnectionPool(host_params["host"], port, maxsize=1, pinned_addresses=self.addresses)
        self._pools.append(pool)
        return pool

    def close(self) -> None:
        super().close()
        for pool in self._pools:
            pool.close()
        self._pools.clear()


def pinned_session(addresses: tuple[str, ...]) -> requests.Session:
    """A session that reaches only ``addresses``, whatever host a URL names; close it after use."""
    session = requests.Session()
    session.trust_env = False  # no proxy, CA bundle or credentials from the environment
    session.proxies = {}
    adapter = PinnedAdapter(addresses)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
