"""OpenTelemetry tracing (app/tracing.py): off — nothing of OpenTelemetry even imported — unless the
OTEL_* variables configure an exporter; on, a live hub under ``tessera serve`` (gunicorn) exports,
over OTLP/HTTP to a collector the test runs, a trace per request with the request's SQL statements
and its outbound call as children, the request id on the request's span and the trace id in the JSON
log lines — and the CLI commands before it export nothing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from app.tracing import exporters
from tests.conftest import make_test_app
from tests.processes import REPO_ROOT, free_port, tessera_server
from tests.test_live_server import DEMO_CLIENT_ID, DEMO_LOGIN, DEMO_PASSWORD, DEMO_REDIRECT_URI, _csrf_token, _env, _follow_inside_hub, _run

SERVER, CLIENT = 2, 3  # Span.SpanKind in the OTLP protocol


# --- which variables switch it on ----------------------------------------------------------------

@pytest.mark.parametrize("environ, expected", [
    ({}, ()),
    ({"OTEL_SERVICE_NAME": "hub", "OTEL_TRACES_SAMPLER": "always_on"}, ()),  # settings, but no exporter
    ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
    ({"OTEL_TRACES_EXPORTER": "OTLP, console"}, ("otlp", "console")),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ()),
    ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"}, ()),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, ("console",)),
    ({"OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_ENDPOINT": " "}, ()),
])
def test_an_exporter_switches_tracing_on(environ, expected):
    assert exporters(environ) == expected


@pytest.mark.parametrize("environ, message", [
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "not jaeger"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "http/protobuf"),
])
def test_an_exporter_the_hub_does_not_ship_stops_the_start_up(environ, message, monkeypatch, database_url):
    assert pytest.raises(ValueError, exporters, environ).match(message)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        make_test_app(database_url)  # refused before anything of OpenTelemetry is loaded


# --- off costs nothing ----------------------------------------------------------------------------

PROBE = """
import json, sys
from app.extensions import db
from app.factory import create_app

app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[1] + "/hub.db"})
with app.app_context():
    db.create_all()
client = app.test_client()
statuses = [client.get(path).status_code for path in ("/.well-known/openid-configuration", "/jwks", "/healthz")]
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")
provider = type(sys.modules["opentelemetry.trace"].get_tracer_provider()).__name__ if loaded else None
with open(sys.argv[1] + "/probe.json", "w") as out:
    json.dump({"statuses": statuses, "loaded": loaded, "provider": provider}, out)
"""


def _probe(tmp_path, **otel) -> dict:
    """Create an app and answer three requests in a fresh interpreter whose only OTEL_* variables are
    ``otel``; what it loaded and which tracer provider it has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TESSERA_"))}
    env.update(otel, TESSERA_INSTANCE_DIR=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads((tmp_path / "probe.json").read_text())
    assert answer["statuses"] == [200, 200, 200], answer
    return answer


@pytest.mark.parametrize("otel", [
    {},
    {"OTEL_SERVICE_NAME": "hub", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
    {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
    {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
], ids=["nothing", "settings-only", "sdk-disabled", "exporter-none"])
def test_without_an_exporter_nothing_of_opentelemetry_is_loaded(tmp_path, otel):
    answer = _probe(tmp_path, **otel)
    assert answer["loaded"] == [] and answer["provider"] is None


def test_with_an_exporter_the_sdk_provider_is_installed(tmp_path):
    """The probe above can tell: with the console exporter, the SDK's provider is the global one."""
    answer = _probe(tmp_path, OTEL_TRACES_EXPORTER="console")
    assert "opentelemetry.sdk.trace" in answer["loaded"]
    assert answer["provider"] == "TracerProvider"


# --- on: a live hub exports to a collector ------------------------------------------------------------

def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


class Collector:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf) that keeps every span, and an SMS
    gateway (POST /sms) that keeps every message with its headers."""

    def __init__(self):
        self.spans: list[dict] = []
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    collector._keep(ExportTraceServiceRequest.FromString(body))
                    answer, content_type = ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
                else:
                    with collector._lock:
                        collector.messages.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    answer, content_type = b"{}", "application/json"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _keep(self, export: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                  "parent": span.parent_span_id.hex() or None, "name": span.name, "kind": span.kind,
                                  "attributes": _attributes(span.attributes), "resource": resource,
                                  "scope": scope_spans.scope.name})
        with self._lock:
            self.spans.extend(spans)

    def wait_for(self, found, what: str, timeout: float = 30.0):
        """Poll until ``found(spans)`` is truthy; its answer."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                answer = found(list(self.spans))
            if answer:
                return answer
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s; spans: {[s['name'] for s in self.spans]}")
            time.sleep(0.1)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A live hub (demo data; demo-web with a back-channel logout URI at the collector) whose OTEL_*
    variables point at the collector, as every process of a deployment would have them."""
    workdir, collector = tmp_path_factory.mktemp("traced-hub"), Collector()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in _env(workdir, issuer).items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{collector.url}/v1/traces",  # switches tracing on: otlp
        OTEL_BSP_SCHEDULE_DELAY="100",  # export every 100 ms, not every 5 s
        TESSERA_LOG_FORMAT="json",
        # the one-time code goes to an SMS gateway: the outbound call made while answering the request
        TESSERA_SMS_SENDER="webhook", TESSERA_SMS_WEBHOOK_URL=f"{collector.url}/sms?key=gateway-secret",
    )
    try:
        _run(["db", "upgrade"], workdir, env)
        _run(["demo", "seed"], workdir, env)
        _run(["clients", "update", DEMO_CLIENT_ID, "--backchannel-logout-uri", f"{collector.url}/backchannel"],
             workdir, env)
        exported_by_the_cli = list(collector.spans)
        with tessera_server(workdir, env, port):
            yield Traced(issuer, env, workdir, collector, exported_by_the_cli)
    finally:
        collector.close()


@dataclass
class Traced:
    issuer: str
    env: dict
    workdir: Path
    collector: Collector
    exported_by_the_cli: list[dict]

    def authorize(self, browser: requests.Session) -> requests.Response:
        """demo-web's authorization request (PKCE), followed to the hub's login page."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"client_id": DEMO_CLIENT_ID, "redirect_uri": DEMO_REDIRECT_URI, "response_type": "code",
                           "scope": "openid", "state": "s", "nonce": "n", "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        first = browser.get(f"{self.issuer}/authorize?{query}", allow_redirects=False, timeout=10)
        return _follow_inside_hub(browser, first, self.issuer)


def _trace_of(spans: list[dict], trace_id: str) -> list[dict]:
    return [span for span in spans if span["trace_id"] == trace_id]


def _ancestors(span: dict, by_id: dict) -> list[str]:
    names = []
    while span["parent"] in by_id:
        span = by_id[span["parent"]]
        names.append(span["span_id"])
    return names


def test_cli_commands_export_nothing(traced):
    """db upgrade, demo seed, clients update ran with tracing on: their statements are in no trace."""
    assert traced.exported_by_the_cli == []


def test_a_request_is_traced_with_its_sql_and_outbound_calls(traced):
    issuer, collector = traced.issuer, traced.collector
    with requests.Session() as browser:
        uid = re.search(r"/interaction/([^/]+)/login", traced.authorize(browser).url).group(1)
        page = browser.get(f"{issuer}/interaction/{uid}/otp", timeout=10)
        request_id = f"trace-test-{secrets.token_hex(4)}"
        sent = browser.post(f"{issuer}/interaction/{uid}/otp?probe=query-secret", allow_redirects=False, timeout=30,
                            data={"csrf_token": _csrf_token(page.text), "phone": DEMO_LOGIN, "submit": "Send code"},
                            headers={"X-Request-ID": request_id})
        assert sent.status_code == 303, sent.text[:500]
    assert requests.get(f"{issuer}/healthz", timeout=10).status_code == 200

    # The request's span, with its id; then its statements and its call to the gateway.
    [server] = collector.wait_for(lambda spans: [s for s in spans if s["attributes"].get("tessera.request_id")
                                                 == request_id], "span of the request")
    assert server["kind"] == SERVER and server["parent"] is None
    assert server["name"] == "POST /interaction/<uid>/otp"
    assert server["attributes"]["http.target"] == f"/interaction/{uid}/otp"  # no query string
    assert server["resource"]["service.name"] == "tessera" and server["resource"]["service.version"]

    def complete(spans):
        mine = _trace_of(spans, server["trace_id"])
        sql = [s for s in mine if s["attributes"].get("db.system") == "sqlite" and "db.statement" in s["attributes"]]
        outbound = [s for s in mine if s["scope"].startswith("opentelemetry.instrumentation.requests")]
        return (mine, sql, outbound) if sql and outbound else None

    mine, sql, [outbound] = collector.wait_for(complete, "statements and outbound call in the request's trace")
    by_id = {span["span_id"]: span for span in mine}
    assert any(s["attributes"]["db.statement"].startswith("INSERT INTO") for s in sql)  # the code's challenge
    assert all(server["span_id"] in _ancestors(s, by_id) for s in sql)
    assert outbound["kind"] == CLIENT and server["span_id"] in _ancestors(outbound, by_id)
    assert outbound["attributes"]["http.method"] == "POST"
    assert outbound["attributes"]["http.url"] == f"{collector.url}/sms"  # the gateway's key cut off
    assert outbound["attributes"]["http.status_code"] == 200
    # The gateway was told the trace (W3C Trace Context) ...
    [message] = [m for m in collector.messages if m["path"].startswith("/sms")]
    assert message["headers"]["traceparent"].split("-")[1] == server["trace_id"]
    # ... no query string anywhere, and the probes are not traced.
    everything = json.dumps(collector.spans)
    assert "query-secret" not in everything and "gateway-secret" not in everything
    assert not [s for s in collector.spans if s["name"] == "GET /healthz"]

    # The JSON access line of the request carries its trace id.
    def access_line():
        for line in (traced.workdir / "serve.log").read_text().splitlines():
            if line.startswith("{") and f'"request_id": "{request_id}"' in line and '"tessera.access"' in line:
                return json.loads(line)
        return None

    deadline = time.monotonic() + 10
    while (line := access_line()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line is not None, (traced.workdir / "serve.log").read_text()[-2000:]
    assert line["trace_id"] == server["trace_id"] and re.fullmatch(r"[0-9a-f]{16}", line["span_id"])


def test_a_worker_delivery_is_a_trace_and_its_polls_are_none(traced):
    """Log in at demo-web, end the session from the CLI: ``tessera worker --once`` delivers the
    back-channel logout token in a trace of its own (the delivery, its statements, its POST); the
    worker's claim queries outside it are not exported."""
    collector = traced.collector
    with requests.Session() as browser:
        page = traced.authorize(browser)
        posted = browser.post(page.url, allow_redirects=False, timeout=30,
                              data={"csrf_token": _csrf_token(page.text), "login": DEMO_LOGIN,
                                    "password": DEMO_PASSWORD, "submit": "Log in"})
        final = _follow_inside_hub(browser, posted, traced.issuer)
        assert final.headers["Location"].startswith(DEMO_REDIRECT_URI + "?code="), final.headers.get("Location")
    _run(["users", "logout", DEMO_LOGIN], traced.workdir, traced.env)
    _run(["worker", "--once"], traced.workdir, traced.env)  # exits: its spans are flushed by then

    [delivery] = collector.wait_for(lambda spans: [s for s in spans if s["name"] == "outbox deliver"],
                                    "span of the delivery")
    assert delivery["parent"] is None and delivery["attributes"]["tessera.outbox.kind"]
    mine = _trace_of(collector.spans, delivery["trace_id"])
    [post] = [s for s in mine if s["scope"].startswith("opentelemetry.instrumentation.requests")]
    assert post["parent"] == delivery["span_id"]
    assert post["attributes"]["http.url"] == f"{collector.url}/backchannel"
    assert any(s["attributes"].get("db.statement", "").startswith("UPDATE outbox_events") for s in mine)
    [message] = [m for m in collector.messages if m["path"] == "/backchannel"]
    assert message["headers"]["traceparent"].split("-")[1] == delivery["trace_id"]
    # Every trace starts at a request or a delivery: no statement or call on its own.
    roots = {(s["kind"], s["name"].split(" ")[0]) for s in collector.spans if s["parent"] is None}
    assert all(kind == SERVER or name == "outbox" for kind, name in roots), roots
