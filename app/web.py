"""The hub's own home page, and /metrics for the operators' monitoring."""

import hmac
import ipaddress

from flask import Blueprint, Response, abort, current_app, render_template, request

from app.events.outbox import delivery_counters
from app.merging.requests import merge_counters
from app.oidc.sessions import current_account, current_session

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    session, account = current_session(), current_account()
    return render_template("index.html", account=account, session=session)


def _may_read_metrics() -> bool:
    """A bearer token equal to TESSERA_METRICS_TOKEN, or a caller in TESSERA_METRICS_ALLOW (loopback
    by default) whose request no untrusted proxy forwarded."""
    config = current_app.config
    token = config["TESSERA_METRICS_TOKEN"]
    scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    if not config["TESSERA_TRUSTED_PROXIES"] and ("X-Forwarded-For" in request.headers or "Forwarded" in request.headers):
        return False  # a proxy we were not told about: its own address says nothing about the caller
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in config["TESSERA_METRICS_ALLOW"])


@bp.get("/metrics")
def metrics():
    """Prometheus text format, for operators: merges by status, outbox events by kind and status.
    Only for a scraper with TESSERA_METRICS_TOKEN or on an address of TESSERA_METRICS_ALLOW; anyone
    else gets the 404 of an unknown path."""
    if not _may_read_metrics():
        abort(404)

    lines = ["# HELP tessera_merges Account merges by status.", "# TYPE tessera_merges gauge"]
    merges = merge_counters()
    for status in ("pending", "running", "completed", "failed"):
        lines.append(f'tessera_merges{{status="{status}"}} {merges.get(status, 0)}')
    lines += ["# HELP tessera_outbox_events Outbox events by kind and status.", "# TYPE tessera_outbox_events gauge"]
    for (kind, status), count in sorted(delivery_counters().items()):
        lines.append(f'tessera_outbox_events{{kind="{kind}",status="{status}"}} {count}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def init_app(app) -> None:
    app.register_blueprint(bp)
