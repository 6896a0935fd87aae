"""The hub's own home page."""

from flask import Blueprint, Response, render_template

from app.oidc.sessions import current_account, current_session

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    session, account = current_session(), current_account()
    return render_template("index.html", account=account, session=session)


@bp.get("/metrics")
def metrics():
    """Prometheus text format, for operators: merges by status, outbox events by kind and status.
    Unauthenticated (counts only): expose it to the monitoring network only."""
    from app.events.service import delivery_counters
    from app.merging.service import merge_counters

    lines = ["# HELP tessera_merges Account merges by status.", "# TYPE tessera_merges gauge"]
    merges = merge_counters()
    for status in ("pending", "running", "completed", "failed"):
        lines.append(f'tessera_merges{{status="{status}"}} {merges.get(status, 0)}')
    lines += ["# HELP tessera_outbox_events Outbox events by kind and status.", "# TYPE tessera_outbox_events gauge"]
    for (kind, status), count in sorted(delivery_counters().items()):
        lines.append(f'tessera_outbox_events{{kind="{kind}",status="{status}"}} {count}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
