"""An upstream login is a first factor like a password: an account with an authenticator app is
asked for its code after it, and the ID token then says multi-factor."""

from __future__ import annotations

import requests

from tests.conftest import ISSUER
from tests.federation.test_upstream import (  # noqa: F401 (rp: a fixture)
    link_on, oidc_provider, rp, start_at_hub, sub_at_rp, through_upstream_op,
)
from tests.mfa.test_second_factor import _code, enrol
from tests.rp import Browser


def test_an_upstream_login_asks_for_the_second_factor(app, http, rp, factories, upstream_op):
    oidc_provider(app, upstream_op)
    mine = factories.account(email="alice.here@example.com")
    _, secret, _ = enrol(app, mine)
    browser = Browser(http, ISSUER)
    request, upstream_url = start_at_hub(browser, rp, "tessera-up")
    page = browser.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    step = link_on(browser, page, mine.phone, mine.password)
    assert step.status_code == 200 and step.request.path.endswith("/mfa"), step.request.path
    done = browser.submit(step, {"code": _code(secret), "verify": "Verify"})
    claims = sub_at_rp(rp, request, done)
    assert claims["amr"] == ["fed", "mfa", "otp", "pwd"] and claims["acr"] == "urn:tessera:loa:2"

    # the next login through the upstream alone: the second factor again
    other = Browser(app.test_client(), ISSUER)
    request, upstream_url = start_at_hub(other, rp, "tessera-up")
    step = other.go(through_upstream_op(upstream_op, requests.Session(), upstream_url, upstream_op.alice))
    assert step.status_code == 200 and step.request.path.endswith("/mfa")
    claims = sub_at_rp(rp, request, other.submit(step, {"code": _code(secret, 1), "verify": "Verify"}))
    assert claims["amr"] == ["fed", "otp"]  # an upstream login and a code: possession twice, one level
