"""A scripted HTTP server on 127.0.0.1: how tests exercise download code with no network."""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Steps whose body never ends: what a hostile or broken mirror sends.
ENDLESS = {"endless": 0.0, "trickle": 0.05}  # kind -> pause between repeats of the body, seconds


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 with scripted per-path responses.

    ``script(path, *steps)``: each request to ``path`` takes the next step, and the last step
    repeats. A step is ``(kind, body)``:

    - ``"ok"``: the body, with its length; ``"404"``: not found;
    - ``"truncated"``: headers announce the full length, half the body is sent, then the
      connection is closed;
    - ``"endless"``: no length, the body over and over until the client hangs up; ``"trickle"``:
      the same, one body every 50 ms (a download that is still running when a test signals it);
    - ``"resumable"``, ``"resumable-truncated"``: as ``"ok"`` and ``"truncated"``, with an ETag,
      and a request's ``Range: bytes=N-`` (with an ``If-Range`` naming that ETag) answered with
      the rest of the body, 206.

    Unscripted paths get 404. Request counts are in ``hits``, each request's headers in
    ``headers[path]``, and the body bytes handed to the connection in ``sent`` (the last write
    to a client that hung up included).
    """

    def __init__(self) -> None:
        self.steps: dict[str, list[tuple[str, bytes]]] = {}
        self.hits: dict[str, int] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.sent: dict[str, int] = {}
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
                    owner.headers.setdefault(self.path, []).append(dict(self.headers.items()))
                    steps = owner.steps.get(self.path, [("404", b"")])
                    kind, body = steps[min(count, len(steps) - 1)]
                if kind == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind in ENDLESS:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    self._endless(body, ENDLESS[kind])
                    return
                start = self._range_start(body) if kind.startswith("resumable") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                if kind.startswith("resumable"):
                    self.send_header("ETag", etag(body))
                    self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                rest = body[start:]
                with contextlib.suppress(OSError):  # a client may hang up early, as on a cap
                    if not kind.endswith("truncated"):
                        self._send(rest)
                        return
                    self._send(rest[: len(rest) // 2])
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _range_start(self, body: bytes) -> int:
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if not wanted or self.headers.get("If-Range") != etag(body):
                    return 0
                start = int(wanted.group(1))
                return start if start < len(body) else 0

            def _send(self, data: bytes) -> None:
                # Counted first: once the client has read the bytes, the test may look.
                with owner.lock:
                    owner.sent[self.path] = owner.sent.get(self.path, 0) + len(data)
                self.wfile.write(data)
                self.wfile.flush()

            def _endless(self, body: bytes, pause: float) -> None:
                with contextlib.suppress(OSError):  # the client hung up: the only way this ends
                    while True:
                        self._send(body)
                        if pause:
                            time.sleep(pause)

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


def etag(body: bytes) -> str:
    """The ETag the ``resumable`` steps give ``body``."""
    return f'"{hashlib.sha256(body).hexdigest()[:16]}"'


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now: for a server to start on, or, left
    alone, an address whose connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
