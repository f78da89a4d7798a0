"""A scripted local HTTP server for the security tests: records what arrives, answers what each path is told to."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, extra headers, body) for a request's path and headers.
Answer = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str = ""
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    routes: dict[str, Answer] = field(default_factory=dict)

    def json(self, path: str, status: int, body: object) -> None:
        self.routes[path] = lambda _p, _h: (status, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def echo_headers(self, path: str, status: int) -> None:
        """Answers with every request header in the body: a remote that quotes back what it was sent."""
        self.routes[path] = lambda _p, h: (status, {"Content-Type": "application/json"}, json.dumps(
            {"status": "error", "error": f"denied for {h}"}).encode())

    def redirect(self, path: str, location: str) -> None:
        self.routes[path] = lambda _p, _h: (302, {"Location": location}, b"")


@contextmanager
def serve() -> Iterator[Server]:
    server = Server()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            route = server.routes.get(path)
            status, headers, payload = route(path, dict(self.headers.items())) if route else (200, {}, b"{}")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.port = int(httpd.server_address[1])
    server.url = f"http://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
