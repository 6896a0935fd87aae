"""Redirect URI rules: exact matching, with the one exception RFC 8252 makes for native apps."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from app.errors import InvalidInput


def is_loopback_host(host: str | None) -> bool:
    return host == "localhost" or _is_loopback_ip(host)


def _is_loopback_ip(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact string match (RFC 6749 3.1.2.3, OIDC Core 3.1.2.1), except that a registered
    loopback IP redirect matches any port (RFC 8252 7.3: the app picks a free port at run time)."""
    if registered == requested:
        return True
    try:
        reg, req = urlsplit(registered), urlsplit(requested)
        req_port = req.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return (
        reg.scheme == "http" and req.scheme == "http"
        and _is_loopback_ip(reg.hostname) and reg.hostname == req.hostname
        and req_port is not None
        and reg.path == req.path and reg.query == req.query and not req.fragment
        and req.username is None and req.password is None
    )


def validate_redirect_uri(uri: str, *, public: bool) -> str:
    """Registration-time rules for a redirect URI (RFC 6749 3.1.2, RFC 8252 7)."""
    parts = urlsplit(uri or "")
    if not parts.scheme:
        raise InvalidInput(f"redirect URI {uri!r} must be absolute")
    if parts.fragment:
        raise InvalidInput(f"redirect URI {uri!r} must not contain a fragment")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise InvalidInput(f"redirect URI {uri!r} has no host")
    elif scheme == "http":
        # http only for the loopback interface (RFC 8252 7.3; development sites on localhost).
        if not is_loopback_host(parts.hostname):
            raise InvalidInput(f"redirect URI {uri!r}: http is allowed only on loopback hosts")
    elif scheme in {"javascript", "data", "file", "vbscript"}:
        raise InvalidInput(f"redirect URI {uri!r} uses a forbidden scheme")
    else:
        # RFC 8252 7.1: private-use URI schemes, in reverse domain name notation, for native apps.
        if not public:
            raise InvalidInput(f"redirect URI {uri!r}: private-use schemes are for public (native) clients")
        if "." not in scheme:
            raise InvalidInput(f"redirect URI {uri!r}: a private-use scheme must be a reverse domain name")
    return uri
