"""A minimal HTTP/1.1 client for the load driver.

gunicorn's sync worker closes the connection after every response (no keep-alive), so every
request is one short TCP connection: connect, send, read to EOF. Doing that on a raw socket costs
the driver a fraction of what ``requests`` costs, which keeps the single driver core from becoming
the bottleneck. Only what the benchmark needs: form and JSON bodies, Content-Length or chunked answers, cookies,
Location.
"""

from __future__ import annotations

import base64
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit


class Response:
    __slots__ = ("status", "headers", "cookies", "body")

    def __init__(self, status: int, headers: dict, cookies: dict, body: bytes):
        self.status, self.headers, self.cookies, self.body = status, headers, cookies, body

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        import json

        return json.loads(self.body)

    def query(self) -> dict:
        """Query parameters of the Location header."""
        return dict(parse_qsl(urlsplit(self.location).query))


class HTTPError(Exception):
    pass


class Client:
    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.host_header = f"{host}:{port}".encode()

    def request(self, method: str, path: str, *, headers: dict | None = None, form: dict | None = None,
                cookies: dict | None = None, json_body=None) -> Response:
        body = urlencode(form).encode() if form is not None else b""
        if json_body is not None:
            import json

            body = json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host_header, b"Connection: close",
                 b"User-Agent: tessera-bench"]
        if form is not None:
            lines.append(b"Content-Type: application/x-www-form-urlencoded")
        elif json_body is not None:
            lines.append(b"Content-Type: application/json")
        if body or method == "POST":
            lines.append(b"Content-Length: " + str(len(body)).encode())
        if cookies:
            lines.append(("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items())).encode())
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body

        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(payload)
            # Half-close at once: gunicorn (>= 23) drains the socket until the peer's FIN after it
            # answers ("close_graceful"); a FIN already queued lets the worker move on without
            # waiting for this thread to be scheduled again. HTTP/1.1 allows it (RFC 9112 9.6).
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            sock.close()
        raw = b"".join(chunks)
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise HTTPError(f"incomplete response to {method} {path}: {raw[:200]!r}")
        head_lines = head.decode("latin-1").split("\r\n")
        status = int(head_lines[0].split(" ", 2)[1])
        resp_headers: dict = {}
        resp_cookies: dict = {}
        for line in head_lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                cname, _, cvalue = pair.partition("=")
                resp_cookies[cname.strip()] = cvalue.strip()
            else:
                resp_headers[name] = value
        if resp_headers.get("transfer-encoding", "").lower() == "chunked":
            content = _dechunk(content)
        return Response(status, resp_headers, resp_cookies, content)

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return self.request("POST", path, **kwargs)


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def path_of(url: str) -> str:
    """The path and query of an absolute or relative URL (the hub's own redirects)."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
