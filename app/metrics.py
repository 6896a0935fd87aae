"""The hub's Prometheus metrics (prometheus-client): counters and histograms that every layer
updates as things happen, and the exposition /metrics serves.

Rules:

- Labels are bounded: a Flask endpoint name (never a raw path), a known HTTP method (anything else is
  ``other``), a status code, a login method or an SMS sender kind named by the code, never a value a
  caller chose.
- One process (``make run``, ``tessera worker``): the metrics live in the process's memory. Several
  gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, the same for every worker
  and emptied before each start; every worker then writes its samples there
  (prometheus-client's multiprocess mode, chosen when the library is imported) and a scrape of any
  worker adds up all of them.
- What the database knows (merges, outbox events) is not kept here: /metrics reads it at scrape
  time and passes it to ``exposition`` as extra collectors, so every worker answers the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest, multiprocess

# No "_created" series next to each counter: one timestamp per label set is noise to a scraper.
disable_created_metrics()

#: Where the workers write their samples in multiprocess mode (None: one process, in memory).
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

#: The metrics of this process (in multiprocess mode only their definitions: samples go to files).
REGISTRY = CollectorRegistry(auto_describe=True)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "tessera_http_requests", "HTTP requests answered, by method, Flask endpoint and status code.",
    ["method", "endpoint", "status"], registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "tessera_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, Flask endpoint and status class (2xx, 4xx, …).",
    ["method", "endpoint", "status_class"], registry=REGISTRY,
)
LOGINS = Counter(
    "tessera_logins", "Logins audited, by method (pwd, otp, otp+pwd, fed) and result (success, failure).",
    ["method", "result"], registry=REGISTRY,
)
OTP_SENDS = Counter(
    "tessera_otp_sends", "One-time codes handed to the SMS sender, by sender kind and result (sent, failed).",
    ["sender", "result"], registry=REGISTRY,
)

#: Audit kinds that are logins, and the result each counts as.
LOGIN_KINDS = {"login.success": "success", "login.failure": "failure"}


def check_multiproc_dir() -> None:
    """Stop the start-up when PROMETHEUS_MULTIPROC_DIR names no writable directory (otherwise the
    first request would fail when it writes its sample)."""
    if MULTIPROC_DIR is None:
        return
    path = Path(MULTIPROC_DIR)
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={MULTIPROC_DIR} is not a writable directory: create it "
                           "(empty) before the workers start")


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def observe_request(method: str, endpoint: str | None, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    method, endpoint = method_label(method), endpoint or "none"
    HTTP_REQUESTS.labels(method, endpoint, str(status)).inc()
    HTTP_DURATION.labels(method, endpoint, f"{status // 100}xx").observe(seconds)


def count_audited(kind: str, details: dict) -> None:
    """Called for every audit event (app.audit.record): a login success or failure is counted by
    its method. Counted when audited, so a login whose transaction later rolls back still counts."""
    result = LOGIN_KINDS.get(kind)
    if result is not None:
        LOGINS.labels(str(details.get("method") or "unknown"), result).inc()


def count_otp_send(sender: str, sent: bool) -> None:
    OTP_SENDS.labels(sender, "sent" if sent else "failed").inc()


class _Forward:
    """Lets a per-scrape registry include the metrics of this process."""

    def collect(self):
        return REGISTRY.collect()


def exposition(*collectors) -> bytes:
    """The Prometheus text format (0.0.4) of this process's metrics — every worker's, added up, in
    multiprocess mode — followed by ``collectors`` (objects with a ``collect()`` yielding metric
    families, read now)."""
    registry = CollectorRegistry(auto_describe=False)  # the collectors are read once, by the exposition
    if MULTIPROC_DIR is None:
        registry.register(_Forward())
    else:
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
