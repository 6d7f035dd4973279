"""The worker's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for Kubernetes."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class WorkerHealth:
    """Liveness: the loop made progress recently. Readiness: subscribed and the model answered."""

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._last_beat = time.monotonic()
        self._ready = False

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.stall_after_s

    def ready(self) -> bool:
        return self._ready and self.alive()


def serve_http(health: WorkerHealth, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the endpoint on a daemon thread and return the server (call .shutdown() to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = health.alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif self.path == "/readyz":
                ok = health.ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server
