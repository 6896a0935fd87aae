"""Outbound HTTP that cannot be turned against the hub's own network (SSRF).

Every call the hub makes to a URL that someone else registered (``sector_identifier_uri`` now;
logout and event pushes, upstream IdPs later) goes through ``fetch``: it refuses loopback,
private, link-local and other non-public addresses unless ``TESSERA_ALLOW_PRIVATE_OUTBOUND`` is
set, follows no redirects, and caps time and size.
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


class OutboundError(Exception):
    pass


def _check_address(host: str, port: int) -> None:
    if current_app.config["TESSERA_ALLOW_PRIVATE_OUTBOUND"]:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundError(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise OutboundError(f"{host} resolves to a non-public address ({address})")


def fetch(method: str, url: str, **kwargs) -> requests.Response:
    import requests  # only processes that call out pay for it (not every web worker's memory)

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError(f"not an http(s) URL: {url}")
    _check_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    kwargs.setdefault("timeout", current_app.config["TESSERA_OUTBOUND_TIMEOUT"])
    try:
        response = requests.request(method, url, allow_redirects=False, stream=True, **kwargs)
        body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise OutboundError(f"{method} {url} failed: {exc}") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise OutboundError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
    response._content = body
    return response
