"""A real Prometheus server for tests: the Debian `prometheus` binary on a free loopback port.

Temporary config and storage; 1 s scrape and rule-evaluation intervals so a short
run has data. `scripts/setup.sh` installs the binary (Debian package `prometheus`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from moderator.local import free_port


class PrometheusError(RuntimeError):
    """The server did not start, or a query failed."""


class PrometheusServer:
    def __init__(
        self,
        targets: Mapping[str, str],
        rule_files: Sequence[Path] = (),
        interval_s: int = 1,
    ) -> None:
        """`targets`: job name → host:port serving /metrics."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("no prometheus binary: run scripts/setup.sh (apt: prometheus)")
        self.binary = binary
        self.targets = dict(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.interval_s = interval_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="moderator-prometheus-")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        root = Path(self._dir.name)
        config = {
            "global": {
                "scrape_interval": f"{self.interval_s}s",
                "scrape_timeout": f"{self.interval_s}s",
                "evaluation_interval": f"{self.interval_s}s",
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (root / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        self.__exit__()
        raise PrometheusError("prometheus not ready after 30 s")

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._log.close()
        self._dir.cleanup()

    def log(self) -> str:
        return (Path(self._dir.name) / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises with Prometheus's error otherwise."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result as a list of {metric, value} (scalars wrapped)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it returned nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} series")
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, predicate: Any, timeout_s: float = 20) -> float | None:
        """Poll `expr` until predicate(value) holds; returns the last value."""
        deadline = time.monotonic() + timeout_s
        value = self.value(expr)
        while not predicate(value) and time.monotonic() < deadline:
            time.sleep(0.25)
            value = self.value(expr)
        return value

    def targets_up(self) -> dict[str, str]:
        """job → health of its (single) target."""
        active = self.api("targets")["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}
