"""A relying party's receiving end on a real socket: records every POST the hub makes to it
(back-channel logout tokens, events), duplicates included (``requests``, ``deliveries``), also
de-duplicates by ``jti`` like a correct receiver must (``processed``), and can be made to fail,
to answer slowly, or to hold its first requests until several are in flight at once."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from joserfc import jws


class Receiver:
    def __init__(self):
        self.requests: list[dict] = []       # every POST received, duplicates included
        self.processed: dict[str, dict] = {}  # jti -> claims, each processed once
        self.status = 200
        self.delay = 0.0
        #: When set (``hold_first``): the first requests wait for each other, answered only once
        #: that many are in flight together — proof that several senders deliver at once.
        self.gate: threading.Barrier | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                token = parse_qs(body).get("logout_token", [body])[0]
                claims = __import__("json").loads(jws.extract_compact(token.encode()).payload)
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "claims": claims, "token": token})
                    gate = receiver.gate if len(receiver.requests) <= (receiver.gate.parties if receiver.gate else 0) else None
                if gate is not None:
                    try:
                        gate.wait()
                    except threading.BrokenBarrierError:
                        pass  # the test gave up waiting: it says so
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.status == 200:
                    receiver.processed.setdefault(claims["jti"], claims)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold_first(self, n: int, timeout: float) -> None:
        """The first ``n`` requests are answered only once all ``n`` are in flight together."""
        self.gate = threading.Barrier(n, timeout=timeout)

    def deliveries(self, jti: str) -> int:
        """How many times a message with this ``jti`` was POSTed (raw: no de-duplication)."""
        with self._lock:
            return sum(1 for r in self.requests if r["claims"].get("jti") == jti)

    def close(self):
        if self.gate is not None:
            self.gate.abort()
        self.server.shutdown()
        self.server.server_close()
