"""Security headers on every response (the OWASP Secure Headers set that applies to an identity
provider): pages are never framed (clickjacking of login, consent and account forms), their
addresses never leak to other sites, and no response is sniffed into another type."""

from __future__ import annotations

#: CSP Level 2 ``frame-ancestors`` (obsoletes X-Frame-Options, which older browsers still need).
NO_FRAMING = "frame-ancestors 'none'"


def add_security_headers(response):
    """``after_request``: nosniff everywhere; on HTML, no framing and a same-origin referrer.

    A page that must be framed (the check_session iframe of Session Management 1.0) says so with
    its own ``frame-ancestors`` directive, and then gets no ``X-Frame-Options``.

    ``Referrer-Policy: same-origin`` rather than ``no-referrer``: nothing of a hub page's address
    (interaction ids, ``state``) reaches another site, while the hub's own form posts keep the
    ``Referer`` that Flask-WTF's CSRF check requires over https (``WTF_CSRF_SSL_STRICT``).
    """
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype != "text/html":
        return response
    policy = headers.get("Content-Security-Policy")
    if policy is None:
        headers["Content-Security-Policy"] = NO_FRAMING
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy}; {NO_FRAMING}"
    if NO_FRAMING in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    return response
