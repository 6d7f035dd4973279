"""The worker's /healthz, /readyz and /metrics endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import moderator.metrics  # noqa: F401  (registers the metrics /metrics must show)
from moderator.local import free_port
from workers.health import WorkerHealth, serve_http


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_probes_follow_worker_state() -> None:
    health = WorkerHealth(stall_after_s=60)
    port = free_port()
    server = serve_http(health, port, host="127.0.0.1")
    try:
        assert _get(port, "/healthz")[0] == 200
        assert _get(port, "/readyz")[0] == 503
        health.set_ready(True)
        assert _get(port, "/readyz")[0] == 200
        health.stall_after_s = 0.0  # no beat within 0 s: the loop counts as stalled
        assert _get(port, "/healthz")[0] == 503
        assert _get(port, "/readyz")[0] == 503
        status, body = _get(port, "/metrics")
        assert status == 200 and b"moderator_posts_consumed_total" in body
        assert _get(port, "/nope")[0] == 404
    finally:
        server.shutdown()


def test_liveness_fails_when_the_model_has_been_failing_too_long() -> None:
    health = WorkerHealth(stall_after_s=60, model_unavailable_s=0.0)
    assert health.alive()
    health.model_failed()
    assert not health.alive()
    health.model_answered()
    assert health.alive()


def test_a_stuck_partition_fails_readiness_with_its_reason_not_liveness() -> None:
    health = WorkerHealth(stall_after_s=60)
    health.set_ready(True)
    port = free_port()
    server = serve_http(health, port, host="127.0.0.1")
    try:
        health.set_stuck_partitions(
            {"posts-3": "stuck at offset 42 (2 failed tries): unsupported_codec: zstd missing"}
        )
        status, body = _get(port, "/readyz")
        assert status == 503
        assert body.decode().splitlines() == [
            "not ready",
            "partition posts-3 stuck at offset 42 (2 failed tries): unsupported_codec: zstd "
            "missing",
        ]
        assert _get(port, "/healthz") == (200, b"ok\n")  # a restart cannot mend it
        health.set_stuck_partitions({})
        assert _get(port, "/readyz") == (200, b"ready\n")
    finally:
        server.shutdown()
