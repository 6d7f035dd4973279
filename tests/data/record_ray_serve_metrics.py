"""Record what Ray Serve exports, for the dashboard tests.

Run: ``python tests/data/record_ray_serve_metrics.py``.

Starts a local Ray with a metrics export port, deploys a stand-in for the Classifier
(same deployment and application names, a @serve.batch method, one call that
raises so the error counter exists), calls it through a DeploymentHandle as a
worker does, and writes the ray_serve_* and ray_moderator_* families the dashboards in
deploy/grafana/ use to tests/data/ray_serve_metrics.prom, as Ray's metrics agent served
them.

The dashboard tests serve that file to Prometheus as a second scrape target, so
every Ray Serve panel is checked against real metric names and labels without
starting Ray. Rerun it after upgrading Ray (about a minute).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "ray_serve_metrics.prom"


def dashboard_families() -> set[str]:
    """ray_serve_* and ray_moderator_* (the replica's own) metric families named by the
    dashboards (histogram suffixes removed)."""
    names: set[str] = set()
    for path in (REPO / "deploy" / "grafana").glob("*.json"):
        for name in re.findall(r"\bray_(?:serve|moderator)_\w+", path.read_text()):
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def filter_exposition(text: str, families: set[str]) -> str:
    kept = []
    for line in text.splitlines():
        match = re.match(r"^(?:# (?:HELP|TYPE) )?(\w+)", line)
        if match is None:
            continue
        name = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in families or family in families:
            kept.append(line)
    return "\n".join(kept) + "\n"


def main() -> int:
    import ray
    from ray import serve

    from moderator.local import free_port
    from moderator.serving.classifier_deployment import DEPLOYMENT_NAME
    from moderator.serving.ray_auth import new_local_token, use_token
    from moderator.serving.replica_metrics import ReplicaMetrics
    from moderator.serving_settings import ServingSettings

    port = free_port()
    use_token(new_local_token())
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        _metrics_export_port=port,
    )

    @serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=8)
    class StandIn:
        def __init__(self) -> None:
            # The Classifier's own metrics, from the same module. No GPU here: the GPU
            # gauges carry stand-in values so that their names and labels are recorded.
            self.metrics = ReplicaMetrics("cpu")

        async def score_batch(self, value: int) -> int:
            if value < 0:
                raise ValueError("recorded error")
            result: int = await self._score_merged(value)
            return result

        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.002)
        async def _score_merged(self, values: list[int]) -> list[int]:
            self.metrics.observe_forward(0.004, len(values))
            self.metrics.set_gpu(0.5, 2**30, 80 * 2**30)
            return [value * 2 for value in values]

    families = dashboard_families()
    try:
        app = StandIn.bind()  # type: ignore[attr-defined]
        handle = serve.run(app, name=ServingSettings().app_name, route_prefix=None)
        with contextlib.suppress(Exception):  # the one recorded error
            handle.score_batch.remote(-1).result()
        deadline = time.monotonic() + 120
        while True:
            for _ in range(5):
                [r.result() for r in [handle.score_batch.remote(i) for i in range(6)]]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            present = {
                m for m in families if re.search(rf"^{m}(_bucket|_sum|_count)?\{{", text, re.M)
            }
            if present == families or time.monotonic() > deadline:
                break
            time.sleep(5)
        missing = sorted(families - present)
        header = (
            f"# Recorded from Ray {ray.__version__} by tests/data/record_ray_serve_metrics.py;\n"
            f"# families: {json.dumps(sorted(families))}\n"
        )
        OUT.write_text(header + filter_exposition(text, families))
        print(f"wrote {OUT} ({len(families) - len(missing)}/{len(families)} families)")
        if missing:
            print(f"never exported: {missing}", file=sys.stderr)
            return 1
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
