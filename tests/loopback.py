"""A scripted HTTP server on 127.0.0.1: how tests exercise download code with no network."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 with scripted per-path responses.

    ``script(path, *steps)``: each request to ``path`` takes the next step, and the last step
    repeats. A step is ``("ok", body)``, ``("404", b"")`` or ``("truncated", body)`` (headers
    announce the full length, half the body is sent, then the connection is closed).
    Unscripted paths get 404. Request counts are in ``hits``.
    """

    def __init__(self) -> None:
        self.steps: dict[str, list[tuple[str, bytes]]] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive loops

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with owner.lock:
                    count = owner.hits.get(self.path, 0)
                    owner.hits[self.path] = count + 1
                    steps = owner.steps.get(self.path, [("404", b"")])
                    kind, body = steps[min(count, len(steps) - 1)]
                if kind == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def script(self, path: str, *steps: tuple[str, bytes]) -> str:
        self.steps[path] = list(steps)
        return f"{self.base}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now: for a server to start on, or, left
    alone, an address whose connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
