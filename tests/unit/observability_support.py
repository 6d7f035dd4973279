"""Shared by the dashboard and alert-rule tests: promtool, and metric names as PromQL sees
them (ours from the registry, Ray Serve's from the recorded exposition)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import moderator.metrics  # noqa: F401  (registers every moderator_* metric)
from tests.paths import REPO

RAY_SNAPSHOT = REPO / "tests" / "data" / "ray_serve_metrics.prom"
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def moderator_series_names() -> set[str]:
    """Every series name a worker's /metrics can expose with the moderator_ prefix."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("moderator_"):
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def ray_series_names() -> set[str]:
    text = RAY_SNAPSHOT.read_text()
    return set(re.findall(r"^(ray_(?:serve|moderator)_\w+)\{", text, flags=re.MULTILINE))


def referenced(text: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{prefix}\w+", text))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run scripts/setup.sh (Debian package prometheus)")
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
