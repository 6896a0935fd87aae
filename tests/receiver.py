"""A relying party's receiving end on a real socket: records what the hub POSTs to it
(back-channel logout tokens, events), de-duplicates by ``jti`` like a correct receiver must,
and can be made to fail or to answer slowly."""

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
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                token = parse_qs(body).get("logout_token", [body])[0]
                claims = __import__("json").loads(jws.extract_compact(token.encode()).payload)
                receiver.requests.append({"path": self.path, "claims": claims, "token": token})
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

    def close(self):
        self.server.shutdown()
        self.server.server_close()
