"""Outbound HTTP that cannot be turned against the hub's own network (SSRF).

Every call the hub makes to a URL that someone else registered or configured (a client's
``sector_identifier_uri``, back-channel logout and Security Event Token pushes, upstream identity
providers, the SMS and legacy-verification webhooks) goes through ``fetch``:

1. the URL's host is resolved once, and every address it resolves to is vetted
   (``is_public_address``): loopback, private, link-local, shared, reserved, multicast and other
   non-global addresses are refused, and so are IPv6 forms that carry an IPv4 address inside
   (IPv4-mapped and 6to4 are judged by the IPv4 address they carry, NAT64 ``64:ff9b::/96`` too;
   IPv4-compatible ``::/96`` and local-use NAT64 ``64:ff9b:1::/48`` are refused outright);
2. the connection goes to those vetted addresses, never to a second DNS answer
   (``app.pinned_http``): a name that answers a public address to the check and a private one to
   the connection (DNS rebinding) reaches nothing. The URL's host stays the ``Host`` header, the
   TLS SNI name and the name the certificate must carry;
3. no redirects, no proxy from the environment, ``TESSERA_OUTBOUND_TIMEOUT``, 512 KiB at most.

``TESSERA_ALLOW_PRIVATE_OUTBOUND`` (development and tests) skips the vetting of step 1 only: the
connection is pinned the same way, so the tests run the production path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipaddress
import socket
from urllib.parse import urlsplit

from flask import current_app

if TYPE_CHECKING:
    import requests

MAX_RESPONSE_BYTES = 512 * 1024

# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits or refer to one.
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")        # RFC 4291 2.5.5.1 (deprecated): never legitimate
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 2.1: the IPv4 address a translator reaches
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a site's own translators, never global


class OutboundError(Exception):
    pass


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: IPAddress) -> bool:
    """Whether the hub may connect to ``address`` on behalf of someone else's URL."""
    if address.version == 6:
        if address.ipv4_mapped is not None:      # ::ffff:a.b.c.d is a.b.c.d
            return is_public_address(address.ipv4_mapped)
        if address in IPV4_COMPATIBLE or address in NAT64_LOCAL_USE or address.is_site_local:
            return False
        if address in NAT64_WELL_KNOWN:          # 64:ff9b::a.b.c.d reaches a.b.c.d
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public_address(address.sixtofour):  # 2002:AABB:CCDD::/48
            return False
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> tuple[str, ...]:
    """The addresses ``host`` resolves to, all vetted (unless TESSERA_ALLOW_PRIVATE_OUTBOUND)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundError(f"cannot resolve {host}: {exc}") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))  # in the resolver's order, once each
    if not addresses:
        raise OutboundError(f"cannot resolve {host}: no address")
    if not current_app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"]:
        for address in addresses:
            if not is_public_address(ipaddress.ip_address(address)):
                raise OutboundError(f"{host} resolves to a non-public address ({address})")
    return addresses


def fetch(method: str, url: str, **kwargs) -> requests.Response:
    # Imported on the first outbound call: only processes that call out pay for requests' memory.
    from app.pinned_http import DEFAULT_PORTS, TRANSPORT_ERRORS, pinned_session  # requests+urllib3: 5 MB RSS measured

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise OutboundError(f"not an http(s) URL: {url}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise OutboundError(f"not an http(s) URL: {url}")
    addresses = resolve(parts.hostname, port or DEFAULT_PORTS[parts.scheme])
    kwargs.setdefault("timeout", current_app.config["TESSERA_OUTBOUND_TIMEOUT"])
    kwargs.pop("proxies", None)
    with pinned_session(addresses) as session:
        try:
            response = session.request(method, url, allow_redirects=False, stream=True, **kwargs)
            try:
                body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            finally:
                response.close()
        except TRANSPORT_ERRORS as exc:
            raise OutboundError(f"{method} {url} failed: {exc}") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise OutboundError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
    response._content = body
    return response
