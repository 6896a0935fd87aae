"""gunicorn config hook that counts SQL statements per request (exploration, not `make bench`).

    gunicorn -c bench/querycount.py --workers 1 wsgi:app
    (drive some load, then stop gunicorn: the worker writes bench/results/querycount.json)

Every cursor execution of the worker's engines is counted (including the pool's pre-ping and
psycopg's implicit BEGIN is *not* a cursor execution, so add one round trip per transaction),
grouped by "METHOD /path" with interaction and resume ids folded.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "querycount.json"
_state = {"current": None, "requests": collections.Counter(), "statements": collections.Counter(),
          "examples": {}, "pings": collections.Counter()}


def _key(environ) -> str:
    path = re.sub(r"/(interaction|authorize/resume)/[^/]+", r"/\1/<uid>", environ.get("PATH_INFO", ""))
    return f"{environ.get('REQUEST_METHOD')} {path}"


def post_worker_init(worker):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        key = _state["current"]
        if key is None:
            return
        _state["statements"][key] += 1
        examples = _state["examples"].setdefault(key, [])
        short = " ".join(statement.split())[:160]
        if short not in examples and len(examples) < 30:
            examples.append(short)

    @event.listens_for(Engine, "engine_connect")
    def ping(conn):  # noqa: ARG001
        if _state["current"] is not None:
            _state["pings"][_state["current"]] += 1

    app = worker.wsgi

    def counting(environ, start_response):
        _state["current"] = _key(environ)
        _state["requests"][_state["current"]] += 1
        try:
            return app(environ, start_response)
        finally:
            _state["current"] = None

    worker.wsgi = counting


def worker_exit(server, worker):  # noqa: ARG001
    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        key: {"requests": n, "statements_per_request": round(_state["statements"][key] / n, 2),
              "connection_checkouts_per_request": round(_state["pings"][key] / n, 2),
              "statements": _state["examples"].get(key, [])}
        for key, n in _state["requests"].items()
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
