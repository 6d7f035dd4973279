"""The Grafana dashboards in deploy/grafana/: generated, well-formed, and querying real series.

tests/integration/test_observability.py runs every query against a real Prometheus
scraping a real worker; these checks need no services (promtool parses the queries).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.paths import REPO
from tests.unit.observability_support import (
    moderator_series_names,
    promtool,
    ray_series_names,
    referenced,
)

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
VARIABLES = {"__rate_interval": "1m", "__interval": "1s", "__range": "5m"}


def _generator() -> ModuleType:
    name = "deploy_grafana_dashboards"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels, out = list(dashboard["panels"]), []
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        out.append(panel)
    return out


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]


def test_the_four_dashboards_are_generated_and_current() -> None:
    generator = _generator()
    assert {p.name for p in DASHBOARDS} == set(generator.DASHBOARDS)
    assert generator.main(["--check"]) == 0, "run: python deploy/grafana/dashboards.py"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["uid"] == path.stem and len(dashboard["uid"]) <= 40
    assert dashboard["title"].startswith("Moderator / ") and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            used = set(re.findall(r"\$\{?(\w+)\}?", target["expr"]))
            assert used <= set(variables) | set(VARIABLES), (panel["title"], used)


def test_dashboard_uids_are_unique() -> None:
    uids = [_load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (template variables resolved) as a recording rule."""
    rules = []
    for path in DASHBOARDS:
        for index, expr in enumerate(_exprs(_load(path))):
            resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), ".*"), expr)
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{index}",
                          "expr": resolved})  # fmt: skip
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_name_only_series_that_exist() -> None:
    """moderator_* series are registered by moderator.metrics; ray_serve_* ones, and the
    replica's own ray_moderator_* ones, appear in the exposition recorded from Ray Serve
    (tests/data/ray_serve_metrics.prom)."""
    ours, ray = moderator_series_names(), ray_series_names()
    for path in DASHBOARDS:
        dashboard = _load(path)
        definitions = [v.get("definition", "") for v in dashboard["templating"]["list"]]
        text = " ".join(_exprs(dashboard) + definitions)
        assert not referenced(text, "moderator_") - ours, path.name
        assert not referenced(text, "ray_serve_") - ray, path.name
        assert not referenced(text, "ray_moderator_") - ray, path.name
