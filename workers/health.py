"""The worker's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for Kubernetes."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class WorkerHealth:
    """Liveness: the loop made progress recently and the model has not been failing for long.

    A worker whose Ray connection died (for example after the Ray cluster was replaced)
    retries forever; failing liveness after `model_unavailable_s` gets it restarted
    with a fresh connection. Readiness: subscribed, alive, and no partition stuck at a
    record batch the worker cannot read (workers/poll_guard.py). A stuck partition fails
    readiness only: a restart cannot bring a missing codec library back or mend a corrupt
    batch, so failing liveness would only turn it into a crash loop.
    """

    def __init__(self, stall_after_s: float, model_unavailable_s: float = float("inf")) -> None:
        self.stall_after_s = stall_after_s
        self.model_unavailable_s = model_unavailable_s
        self._last_beat = time.monotonic()
        self._ready = False
        self._failing_since: float | None = None
        self._stuck: dict[str, str] = {}

    def model_failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def model_answered(self) -> None:
        self._failing_since = None

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def set_stuck_partitions(self, stuck: dict[str, str]) -> None:
        """Partitions held at an unreadable batch ("topic-partition" → why); {} when none."""
        self._stuck = dict(stuck)

    def not_ready_reasons(self) -> list[str]:
        return [f"partition {name} {why}" for name, why in sorted(self._stuck.items())]

    def alive(self) -> bool:
        now = time.monotonic()
        if self._failing_since is not None and now - self._failing_since > self.model_unavailable_s:
            return False
        return now - self._last_beat < self.stall_after_s

    def ready(self) -> bool:
        return self._ready and self.alive() and not self._stuck


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
                lines = ["ready"] if ok else ["not ready", *health.not_ready_reasons()]
                self._send(200 if ok else 503, "\n".join([*lines, ""]).encode())
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
