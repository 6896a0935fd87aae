"""The admin console's dashboard: the hub's own metrics, read in-process (the exposition /metrics
serves — this process's counters, or every worker's in multiprocess mode — and the database's
gauges), as horizontal bar charts the template draws as server-side SVG (no script, no CDN).

What each role sees: the hub-wide counters (logins and failures by method, one-time code sends,
merges by status) are for roles that read the whole hub (super, auditor); the outbox backlog and
failing deliveries per client for those reading deliveries, a tenant admin's own clients only.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from app.admin.principals import Principal
from app.admin.reach import clients_query
from app.extensions import db
from app.metrics import exposition
from app.oidc.models import Client
from app.web import DatabaseCollector

#: The drawing's geometry (SVG user units; the SVG scales to its box's width).
WIDTH, LABEL, ROW = 360, 130, 22


@dataclass
class Bar:
    label: str
    value: float
    y: int
    width: float


@dataclass
class Chart:
    slug: str
    title: str
    bars: list[Bar]

    @property
    def height(self) -> int:
        return max(1, len(self.bars)) * ROW + 4


def _chart(slug: str, title: str, values: dict[str, float]) -> Chart:
    top = max(values.values(), default=0) or 1
    span = WIDTH - LABEL - 40  # room for the value after the bar
    bars = [Bar(label, value, i * ROW, round(span * value / top, 1))
            for i, (label, value) in enumerate(sorted(values.items(), key=lambda item: (-item[1], item[0])))]
    return Chart(slug, title, bars)


def _samples() -> dict[str, list]:
    """Every sample of the exposition, by sample name."""
    text = exposition(DatabaseCollector()).decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _sum_by(samples, label: str, **where) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample in samples:
        if all(sample.labels.get(k) == v for k, v in where.items()):
            key = sample.labels.get(label) or "unknown"
            out[key] = out.get(key, 0) + sample.value
    return out


def dashboard_charts(principal: Principal) -> list[Chart]:
    samples = _samples()
    charts = []
    if principal.tenant_id is None and principal.may("audit", "read"):
        logins = samples.get("tessera_logins_total", [])
        charts += [_chart("logins", "Logins by method", _sum_by(logins, "method", result="success")),
                   _chart("login-failures", "Failed logins by method", _sum_by(logins, "method", result="failure")),
                   _chart("otp-sends", "One-time codes sent, by result",
                          _sum_by(samples.get("tessera_otp_sends_total", []), "result")),
                   _chart("merges", "Merges by status", _sum_by(samples.get("tessera_merges", []), "status"))]
    if principal.may("deliveries", "read"):
        mine = None
        if principal.tenant_id is not None:
            mine = set(db.session.scalars(clients_query(principal).with_only_columns(Client.client_id)))
        for slug, title, name in (("backlog", "Outbox backlog by client", "tessera_outbox_backlog"),
                                  ("failing", "Failing deliveries by client", "tessera_outbox_failing")):
            values = _sum_by(samples.get(name, []), "client")
            charts.append(_chart(slug, title, {k: v for k, v in values.items() if mine is None or k in mine}))
    return charts
