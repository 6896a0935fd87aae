"""What operators' probes and logs see, through HTTP: /healthz (the process is up, no database),
/readyz (database, migrations at head, Redis; 503 naming what is not ready, never a 500, bounded
in time), the X-Request-ID of every answer, and JSON log lines that carry it."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest
from sqlalchemy import text

from app import health, observability
from app.config import load_config
from app.extensions import db
from tests.conftest import make_test_app


@pytest.fixture
def stamped(app):
    """Stamp the test database with the given revisions (as `tessera db upgrade` would); dropped after."""
    def stamp(*revisions):
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            for revision in revisions:
                connection.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    yield stamp
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _head() -> str:
    [head] = health.migration_heads()
    return head


# --- /healthz ----------------------------------------------------------------------------------------

def test_healthz_answers_without_the_database():
    unreachable = make_test_app("postgresql://nobody@127.0.0.1:1/nothing")
    response = unreachable.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


# --- /readyz -----------------------------------------------------------------------------------------

def test_the_head_is_read_from_the_revision_files_as_alembic_reads_it():
    from alembic.script import ScriptDirectory  # the tests may load Alembic; the web workers do not

    alembic = ScriptDirectory(str(health.VERSIONS_DIR.parent))
    assert health.migration_heads() == frozenset(alembic.get_heads())


def test_readyz_is_ready_when_the_database_is_at_head(http, stamped):
    stamped(_head())
    response = http.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ready",
                                   "checks": {"database": "ok", "migrations": "ok", "redis": "not configured"}}
    assert response.headers["Cache-Control"] == "no-store"
    assert _head() not in response.get_data(as_text=True)  # no revision, no version


def test_readyz_refuses_a_database_behind_head(http, stamped):
    stamped("0001")
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"] == "not at head"
    assert response.get_json()["not_ready"] == ["migrations"]
    assert "0001" not in response.get_data(as_text=True)


def test_readyz_refuses_a_fresh_empty_database(tmp_path):
    fresh = make_test_app(f"sqlite:///{tmp_path}/empty.db")
    response = fresh.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready", "not_ready": ["migrations"],
                                   "checks": {"database": "ok", "migrations": "not migrated", "redis": "not configured"}}


def test_readyz_refuses_an_unreachable_database_without_a_500():
    unreachable = make_test_app("postgresql://nobody@127.0.0.1:1/nothing", TESSERA_READYZ_TIMEOUT=5)
    response = unreachable.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "unreachable", "migrations": "not checked",
                                             "redis": "not configured"}
    assert "nobody" not in response.get_data(as_text=True) and "127.0.0.1" not in response.get_data(as_text=True)


def test_readyz_refuses_an_unreachable_redis(app, http, stamped, monkeypatch):
    stamped(_head())
    monkeypatch.setitem(app.config, "TESSERA_REDIS_URL", "redis://127.0.0.1:1/0")
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"] == "unreachable"
    assert response.get_json()["not_ready"] == ["redis"]
    assert "6379" not in response.get_data(as_text=True) and ":1/" not in response.get_data(as_text=True)


def test_readyz_pings_a_reachable_redis(app, http, stamped, monkeypatch):
    """PING only: nothing is written to the shared Redis."""
    url = "redis://127.0.0.1:6379/0"
    if not health._redis_answers(url, 1.0):
        pytest.skip("no Redis on 127.0.0.1:6379")
    stamped(_head())
    monkeypatch.setitem(app.config, "TESSERA_REDIS_URL", url)
    response = http.get("/readyz")
    assert response.status_code == 200 and response.get_json()["checks"]["redis"] == "ok"


def test_a_check_that_hangs_is_not_ready_once_the_timeout_is_over(app, http, monkeypatch):
    release = threading.Event()

    def hanging(engine):
        release.wait(10)
        return set()

    monkeypatch.setattr(health, "_database_state", hanging)
    monkeypatch.setitem(app.config, "TESSERA_READYZ_TIMEOUT", 0.2)
    try:
        started = time.monotonic()
        response = http.get("/readyz")
        assert time.monotonic() - started < 2
    finally:
        release.set()
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "timeout", "migrations": "not checked",
                                             "redis": "not configured"}


def test_a_check_that_cannot_run_is_a_503_not_a_500(http, monkeypatch):
    def broken():
        raise RuntimeError("something unexpected")

    monkeypatch.setattr("app.web.readiness", broken)
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready", "checks": {"readiness": "not checked"},
                                   "not_ready": ["readiness"]}


@pytest.mark.parametrize("setting, value", [("TESSERA_READYZ_TIMEOUT", "0"), ("TESSERA_READYZ_TIMEOUT", "nan"),
                                            ("TESSERA_READYZ_TIMEOUT", "soon"), ("TESSERA_LOG_FORMAT", "xml")])
def test_bad_settings_stop_the_start_up(monkeypatch, setting, value):
    monkeypatch.setenv(setting, value)
    with pytest.raises(ValueError):
        load_config()


# --- X-Request-ID ------------------------------------------------------------------------------------

def test_a_well_formed_request_id_is_echoed(http):
    for incoming in ("abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "trace:1.2_3", "x" * 128):
        assert http.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming


def test_a_request_id_is_made_when_none_is_sent(http):
    first, second = (http.get("/healthz").headers["X-Request-ID"] for _ in range(2))
    assert len(first) == 32 and int(first, 16) >= 0 and first != second


@pytest.mark.parametrize("malformed", ["", "x" * 129, "has space", "<script>", "a;b", "naïve", "a\tb", "a/b"])
def test_a_malformed_request_id_is_replaced(http, malformed):
    answered = http.get("/healthz", headers={"X-Request-ID": malformed}).headers["X-Request-ID"]
    assert answered != malformed and len(answered) == 32


def test_every_error_answer_carries_the_request_id(http):
    sent = {"X-Request-ID": "error-answer-1"}
    answers = [
        http.get("/no-such-page", headers=sent),                                        # 404
        http.delete("/healthz", headers=sent),                                          # 405
        http.get("/account/login?next=%00", headers=sent),                              # 400 (NUL)
        http.post("/token", data=b"x" * (2 * 1024 * 1024), headers=sent),               # 413
        http.get("/metrics", headers=sent, environ_base={"REMOTE_ADDR": "203.0.113.5"}),  # 404 (not an operator)
        http.get("/api/users/nobody", headers=sent),                                    # 401 problem
    ]
    assert [a.status_code for a in answers] == [404, 405, 400, 413, 404, 401]
    assert all(a.headers["X-Request-ID"] == "error-answer-1" for a in answers)


def test_a_server_error_carries_the_request_id(database_url):
    broken = make_test_app(database_url, PROPAGATE_EXCEPTIONS=False)

    @broken.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = broken.test_client().get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "boom-1"


# --- JSON logs ---------------------------------------------------------------------------------------

@pytest.fixture
def json_lines():
    """The JSON handler of TESSERA_LOG_FORMAT=json on the root logger at INFO, writing to a buffer."""
    buffer = io.StringIO()
    handler = observability.json_handler()
    handler.setStream(buffer)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_access_line_is_json_with_the_request_id(http, json_lines):
    response = http.get("/healthz?secret=do-not-log", headers={"X-Request-ID": "log-line-1"})
    [access] = [line for line in json_lines() if line["logger"] == "tessera.access"]
    assert access["request_id"] == response.headers["X-Request-ID"] == "log-line-1"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/healthz", 200)
    assert access["level"] == "INFO" and isinstance(access["duration_ms"], float) and access["time"].endswith("+00:00")
    assert "do-not-log" not in json.dumps(access)  # the query string is not logged


def test_lines_logged_during_a_request_carry_its_id(app, json_lines):
    with app.test_request_context("/", headers={"X-Request-ID": "inside-1"}):
        logging.getLogger("tessera.test").warning("something %s", "happened")
    logging.getLogger("tessera.test").warning("outside a request")
    inside, outside = json_lines()
    assert inside == {"time": inside["time"], "level": "WARNING", "logger": "tessera.test",
                      "message": "something happened", "request_id": "inside-1"}
    assert outside["request_id"] is None


def test_json_log_format_installs_one_handler(database_url):
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    try:
        make_test_app(database_url, TESSERA_LOG_FORMAT="json")
        make_test_app(database_url, TESSERA_LOG_FORMAT="json")
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0].formatter, observability.JsonFormatter)
        assert root.level == logging.INFO
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_text_log_format_leaves_logging_alone(database_url):
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    make_test_app(database_url, TESSERA_LOG_FORMAT="text")
    assert root.handlers == before and root.level == level
