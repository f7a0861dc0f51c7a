"""A local webhook receiver: checks every POST's ``Pushtrack-Signature`` the way
docs/api.md tells receivers to, and keeps what it accepted.

Its behaviour is scripted per request: ``answers`` is a list of what the next
requests get ("ok", "500", or "slow": accept, then answer after ``slow_seconds``),
after which every request gets "ok". It can be started late or stopped and started
again on the same port (an endpoint that is down refuses connections).

Its port is held from the moment it is made until it is closed: bound (listening only
while started), so no other receiver, server or ``free_port()`` is given the same one
meanwhile, and while it is down a connection is refused (nothing listens), not queued.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Seconds a signature's ``t`` may be from the receiver's clock.
TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """The receiver side of the signature (as docs/api.md shows it)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - t) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _bound(port: int) -> socket.socket:
    """A socket bound to ``port`` of 127.0.0.1 (0: one the system picks), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


class Receiver:
    def __init__(self, port: int = 0, secret: str = "") -> None:
        #: holds the port while nothing listens on it (see the module's docstring)
        self._held: socket.socket | None = _bound(port)
        self.port: int = self._held.getsockname()[1]
        self.secret = secret
        self.answers: list[str] = []
        self.slow_seconds = 1.5
        #: every batch it accepted (a 2xx, or a slow one it had taken in), in order
        self.batches: list[list[dict[str, Any]]] = []
        self.bad_signatures = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for batch in self.batches for e in batch]

    def unique(self) -> dict[str, dict[str, Any]]:
        """Accepted events by id, first seen first (de-duplicated)."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.events():
            out.setdefault(e["id"], e)
        return out

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                    answer = receiver.answers.pop(0) if receiver.answers else "ok"
                    signed = verify(
                        receiver.secret, self.headers.get("Pushtrack-Signature", ""), body
                    )
                    if not signed:
                        receiver.bad_signatures += 1
                    elif answer in ("ok", "slow"):
                        receiver.batches.append(json.loads(body)["events"])
                if not signed:
                    self._answer(401)
                elif answer == "500":
                    self._answer(500)
                else:
                    if answer == "slow":
                        time.sleep(receiver.slow_seconds)
                    self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = self._held if self._held is not None else _bound(self.port)
        self._held = None
        server.server_name, server.server_port = "127.0.0.1", self.port
        server.server_activate()  # listens on the port it held
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop answering: connections are refused from now on (the port stays held)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._held = _bound(self.port)

    def close(self) -> None:
        """Stop, and give the port up."""
        self.stop()
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
