"""What operators see of each request: its request id, the access log line, the request metrics,
and the log format (``TESSERA_LOG_FORMAT``).

Rules:

- Every request has an id: a well-formed incoming ``X-Request-ID`` (1 to 128 letters, digits,
  ``-``, ``_``, ``.``, ``:``) is kept, anything else is replaced by a new random one; every answer,
  errors included, carries it back in ``X-Request-ID``, and every log line written while the request
  runs carries it (``request_id``).
- The access line (logger ``tessera.access``, INFO) names the method, the path without its query
  string (where codes and tokens travel), the status and the duration in milliseconds.
- ``TESSERA_LOG_FORMAT=json``: the root logger writes one JSON object per line to stderr (time,
  level, logger, message, request_id, and the access line's fields; ``trace_id`` and ``span_id``
  when tracing is on and the line was written inside a recorded span, app/tracing.py) at INFO.
  ``text`` (the default) leaves Python's logging as it is.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, g, has_request_context, request

from app.metrics import check_multiproc_dir, observe_request

HEADER = "X-Request-ID"
WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The access line's fields, copied into the JSON object when a log record carries them.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
#: Set on log records by app/tracing_sdk.py when tracing is on; copied when a record has them.
TRACE_FIELDS = ("trace_id", "span_id")

access_log = logging.getLogger("tessera.access")


def request_id() -> str:
    """The current request's id: the caller's well-formed one, or a new one (made once)."""
    if "request_id" not in g:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex
    return g.request_id


def start_request() -> None:
    """``before_request`` (installed first): the clock and the id."""
    g.request_started = time.perf_counter()
    request_id()


def finish_request(response):
    """``after_request`` (also for error answers): the id header, the metrics, the access line."""
    response.headers[HEADER] = request_id()
    started = g.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    observe_request(request.method, request.endpoint, response.status_code, seconds)
    duration_ms = round(seconds * 1000, 1)
    access_log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms,
                    extra={"method": request.method, "path": request.path, "status": response.status_code,
                           "duration_ms": duration_ms})
    return response


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: the current request's, or None outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id() if has_request_context() else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({field: getattr(record, field) for field in ACCESS_FIELDS + TRACE_FIELDS if hasattr(record, field)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _JsonHandler(logging.StreamHandler):
    """The handler ``configure_logging`` installs (one at most: a second app replaces it)."""


def json_handler() -> logging.Handler:
    handler = _JsonHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(log_format: str) -> None:
    """``json``: the root logger writes JSON lines at INFO through one handler of ours (a second
    app replaces the first's; handlers others added stay). ``text``: nothing changes."""
    if log_format != "json":
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    """Call before any other ``before_request`` is registered, so that the id exists for them."""
    check_multiproc_dir()
    configure_logging(app.config["TESSERA_LOG_FORMAT"])
    app.before_request(start_request)
    app.after_request(finish_request)
