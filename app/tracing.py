"""OpenTelemetry tracing, switched on by the standard ``OTEL_*`` environment variables: a trace per
HTTP request with a span for each SQL statement and each outbound call made while answering it, and
a trace per outbox delivery of the worker (``span``).

Rules:

- On only when an exporter is configured (``exporters``): ``OTEL_TRACES_EXPORTER`` names ``otlp``
  and/or ``console``, or, with it unset, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (then ``otlp``, over HTTP/protobuf).
  ``OTEL_SDK_DISABLED=true`` and ``OTEL_TRACES_EXPORTER=none`` keep it off. Unlike the SDK's own
  default (``otlp`` to localhost), nothing configured means off. Another exporter name, or an OTLP
  protocol other than ``http/protobuf``, stops the start-up.
- Off, nothing of OpenTelemetry is imported and nothing is instrumented: no cost at all.
  On, ``app.tracing_sdk`` (imported then) does the work once per process — the tracer provider, its
  exporters, ``requests`` and every SQLAlchemy engine created afterwards — and instruments each app's
  Flask requests. ``create_app`` calls ``init_app`` before it binds the database, so the app's engine
  is among them.
- gunicorn: ``tessera serve`` does not preload the app, so each worker imports ``app.wsgi`` after
  the fork and starts its own provider and exporter thread; the arbiter never loads the app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext

from flask import Flask

#: The exporters the hub ships: OTLP over HTTP/protobuf, and the SDK's console exporter (stdout).
EXPORTERS = ("otlp", "console")
OTLP_PROTOCOL = "http/protobuf"

#: The tracer of this process once tracing is on (None: off, or no app created yet).
_tracer = None


def _value(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or "").strip()


def exporters(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The trace exporters the ``OTEL_*`` variables ask for, in order; () when tracing is off."""
    if _value(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return ()
    named = _value(environ, "OTEL_TRACES_EXPORTER")
    if named:
        names = tuple(dict.fromkeys(part.strip().lower() for part in named.split(",") if part.strip()))
        unknown = [name for name in names if name not in (*EXPORTERS, "none")]
        if unknown:
            raise ValueError(f"OTEL_TRACES_EXPORTER={named!r}: Tessera ships the exporters "
                             f"{', '.join(EXPORTERS)} (or none), not {', '.join(unknown)}")
        chosen = tuple(name for name in names if name != "none")
    elif _value(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _value(environ, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        chosen = ("otlp",)
    else:
        chosen = ()
    if "otlp" in chosen:
        protocol = (_value(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _value(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
                    or OTLP_PROTOCOL)
        if protocol != OTLP_PROTOCOL:
            raise ValueError(f"OTLP protocol {protocol!r}: Tessera ships the {OTLP_PROTOCOL} exporter only")
    return chosen


def init_app(app: Flask) -> None:
    """Trace this app when the environment configures an exporter. Call before ``db.init_app``."""
    global _tracer
    chosen = exporters()
    if not chosen:
        return
    from app import tracing_sdk  # OpenTelemetry is loaded only when tracing is on (zero cost when off)

    if _tracer is None:
        _tracer = tracing_sdk.start(chosen)
    tracing_sdk.instrument_app(app)


def span(name: str, attributes: dict | None = None):
    """A span around work done outside a request (an outbox delivery), with the SQL statements and
    outbound calls inside it as children; nothing at all when tracing is off."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(name, attributes=attributes)
