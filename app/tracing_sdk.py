"""The OpenTelemetry side of ``app.tracing``, imported only once tracing is on: the process's tracer
provider and exporters, the instrumentation of Flask, SQLAlchemy and ``requests``, and the trace ids
on log records.

Rules:

- The resource's ``service.name`` is ``tessera`` unless ``OTEL_SERVICE_NAME`` or
  ``OTEL_RESOURCE_ATTRIBUTES`` names one. The SDK reads the rest of its ``OTEL_*`` variables itself:
  the sampler (``OTEL_TRACES_SAMPLER``), the batch processor's delays and sizes (``OTEL_BSP_*``),
  the OTLP endpoint, headers, timeout and compression (``OTEL_EXPORTER_OTLP_*``).
- A span is recorded inside a trace only: a database statement or an outbound call with no parent
  (a worker's idle poll, a CLI command's queries) is dropped (``InsideTraces``), so ``tessera
  worker`` and ``tessera db upgrade`` export nothing but the deliveries they trace on purpose.
- No query string in a span: codes, tokens and ``id_token_hint`` travel there on the way in, and a
  webhook's key may sit in its URL on the way out. The request's span carries the request id
  (``tessera.request_id``, app/observability.py). /healthz, /readyz and /metrics are not traced unless
  ``OTEL_PYTHON_FLASK_EXCLUDED_URLS`` or ``OTEL_PYTHON_EXCLUDED_URLS`` says otherwise.
- A log record made inside a recorded span carries ``trace_id`` and ``span_id`` (32 and 16 hex
  digits): the JSON log lines show them.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import PackageNotFoundError, version

from flask import Flask
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from app.observability import request_id

DEFAULT_SERVICE_NAME = "tessera"
REQUEST_ID_ATTRIBUTE = "tessera.request_id"
EXPORTER_CLASSES = {"otlp": OTLPSpanExporter, "console": ConsoleSpanExporter}
#: Not traced by default: the probes and the scrape, every few seconds from every monitor.
PROBES = r"^[^?]*/(healthz|readyz|metrics)/?(\?|$)"
#: URL attributes of the HTTP semantic conventions (old and stable) whose query string is cut off.
URL_ATTRIBUTES = ("http.target", "http.url", "url.full")


class InsideTraces(Sampler):
    """The configured sampler (``OTEL_TRACES_SAMPLER``, parent-based by default), except that a
    client span with no parent — a statement or an outbound call outside any request or delivery —
    is never recorded."""

    def __init__(self, configured: Sampler):
        self.configured = configured

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.configured.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"InsideTraces{{{self.configured.get_description()}}}"


def resource() -> Resource:
    """The SDK's resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``), named ``tessera``
    where they name no service, with the installed version."""
    detected = Resource.create()
    defaults = {}
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # the SDK's placeholder
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if SERVICE_VERSION not in detected.attributes:
        try:
            defaults[SERVICE_VERSION] = version("tessera")
        except PackageNotFoundError:
            pass
    return detected.merge(Resource(defaults))


def start(exporters: tuple[str, ...]) -> trace.Tracer:
    """Once per process: the global tracer provider exporting through ``exporters`` (names of
    ``EXPORTER_CLASSES``), ``requests`` and every SQLAlchemy engine created from now on instrumented,
    trace ids on log records. Returns the hub's own tracer."""
    provider = TracerProvider(resource=resource())
    provider.sampler = InsideTraces(provider.sampler)  # the SDK read OTEL_TRACES_SAMPLER; set before any tracer
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(EXPORTER_CLASSES[name]()))
    trace.set_tracer_provider(provider)
    # skip_dep_check: the instrumentation declares SQLAlchemy < 2.1 while the engine events it uses
    # are unchanged in 2.1 (tests/test_tracing.py sees the statements' spans).
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RequestsInstrumentor().instrument(tracer_provider=provider, request_hook=_outbound_span)
    _add_trace_ids_to_log_records()
    return provider.get_tracer("tessera")


def instrument_app(app: Flask) -> None:
    """A span for each request this app answers (the probes excepted, see ``PROBES``)."""
    own_list = os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
    FlaskInstrumentor.instrument_app(app, tracer_provider=trace.get_tracer_provider(),
                                     excluded_urls=None if own_list else PROBES)
    # After the instrumentation's own before_request (which starts the span and sets its attributes).
    app.before_request(_label_request_span)


def _without_query(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


def _cut_queries(span) -> None:
    for key in URL_ATTRIBUTES:
        value = span.attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, _without_query(value))
    if "url.query" in span.attributes:
        span.set_attribute("url.query", "REDACTED")


def _label_request_span(_=None) -> None:
    """The request id on the request's span, and no query string in its attributes."""
    span = trace.get_current_span()
    if span.is_recording():
        _cut_queries(span)
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id())


def _outbound_span(span, request) -> None:  # noqa: ARG001 — the hook's signature
    if span.is_recording():
        _cut_queries(span)


def _add_trace_ids_to_log_records() -> None:
    make_record = logging.getLogRecordFactory()

    def record_with_trace_ids(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            record.trace_id, record.span_id = format_trace_id(context.trace_id), format_span_id(context.span_id)
        return record

    logging.setLogRecordFactory(record_with_trace_ids)
