"""The hub's own home page, and what operators' monitoring reads: /healthz (the process is up),
/readyz (it may take traffic) and /metrics."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from app.events.outbox import backlog_by_client, delivery_counters
from app.extensions import db
from app.health import is_ready, readiness
from app.merging.models import STATUSES as MERGE_STATUSES
from app.merging.requests import merge_counters
from app.metrics import exposition
from app.oidc.models import Client
from app.oidc.sessions import current_account, current_session

bp = Blueprint("web", __name__)
log = logging.getLogger(__name__)


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


@bp.get("/healthz")
def healthz():
    """The process is up and answers: 200 without touching the database (liveness)."""
    return _no_store(jsonify(status="ok"))


@bp.get("/readyz")
def readyz():
    """200 when the database answers, its schema is at the head of migrations/ and Redis (when
    configured) answers; otherwise 503 naming what is not ready (app.health). Never a 500."""
    try:
        checks = readiness()
    except Exception:  # noqa: BLE001 — a check that could not even run is "not ready", never a 500
        current_app.logger.exception("readiness check failed")
        checks = {"readiness": "not checked"}
    ready = is_ready(checks)
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if not ready:
        body["not_ready"] = sorted(name for name, word in checks.items() if word not in ("ok", "not configured"))
    return _no_store(jsonify(body)), 200 if ready else 503


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


class DatabaseCollector:
    """What the database knows, read at scrape time: merges by status, outbox events by kind and
    status, and the outbox backlog and failing deliveries per client (its public client_id).
    ``tessera_metrics_database_ok`` is 0 (and those are missing) when the database could not be read:
    the process's own metrics are still served, never a 500."""

    def collect(self):
        try:
            families = list(_database_gauges())
        except SQLAlchemyError:
            db.session.rollback()
            log.warning("/metrics: the database could not be read", exc_info=True)
            families = []
        ok = GaugeMetricFamily("tessera_metrics_database_ok", "1 when this scrape read the database's gauges.")
        ok.add_metric([], 1 if families else 0)
        yield ok
        yield from families


def _database_gauges():
    merges = merge_counters()
    gauge = GaugeMetricFamily("tessera_merges", "Account merges by status.", labels=["status"])
    for status in MERGE_STATUSES:
        gauge.add_metric([status], merges.get(status, 0))
    yield gauge
    gauge = GaugeMetricFamily("tessera_outbox_events", "Outbox events by kind and status.", labels=["kind", "status"])
    for (kind, status), count in sorted(delivery_counters().items()):
        gauge.add_metric([kind, status], count)
    yield gauge
    backlog = backlog_by_client()
    names = dict(db.session.execute(db.select(Client.id, Client.client_id)
                                    .where(Client.id.in_([pk for pk in backlog if pk is not None]))).all())
    pending = GaugeMetricFamily("tessera_outbox_backlog", "Outbox events waiting for delivery, by client.",
                                labels=["client"])
    failing = GaugeMetricFamily("tessera_outbox_failing", "Outbox events waiting for delivery whose last "
                                "attempt failed, by client.", labels=["client"])
    for pk, (waiting, failed) in sorted(backlog.items(), key=lambda item: names.get(item[0], "")):
        client = names.get(pk, "")
        pending.add_metric([client], waiting)
        failing.add_metric([client], failed)
    yield pending
    yield failing


@bp.get("/metrics")
def metrics():
    """Prometheus text format, for operators: this process's (or, in multiprocess mode, every
    worker's) request, login and SMS counters (app.metrics), and what the database knows (merges,
    outbox events, backlog per client). Only for a scraper with TESSERA_METRICS_TOKEN or on an
    address of TESSERA_METRICS_ALLOW; anyone else gets the 404 of an unknown path."""
    if not _may_read_metrics():
        abort(404)
    return Response(exposition(DatabaseCollector()), mimetype="text/plain; version=0.0.4")


def init_app(app) -> None:
    app.register_blueprint(bp)
