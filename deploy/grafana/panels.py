"""Panel, variable and dashboard builders for dashboards.py (plain Grafana JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
W = 'namespace=~"$namespace", job=~"$job"'  # moderator_* worker series
R = 'application=~"$application", deployment=~"$deployment"'  # ray_serve_* series
RATE = "$__rate_interval"

Panel = dict[str, Any]


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Layout:
    """Places panels left to right in a 24-column grid, wrapping to new rows."""

    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1
    panels: list[Panel] = field(default_factory=list)

    def add(self, panel: Panel, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(panel)

    def row(self, title: str) -> None:
        if self.x or self.row_height:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.panels.append(
            {
                "id": self.next_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.next_id += 1
        self.y += 1


def _targets(targets: list[Target]) -> list[dict[str, Any]]:
    out = []
    for index, target in enumerate(targets):
        out.append(
            {
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": target.expr,
                "instant": target.instant,
                "range": not target.instant,
                "legendFormat": target.legend or "__auto",
                "refId": chr(ord("A") + index),
            }
        )
    return out


def timeseries(
    title: str,
    description: str,
    targets: list[Target],
    unit: str = "short",
    stack: bool = False,
    minimum: float | None = 0,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 25 if stack else 5,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if minimum is not None:
        defaults["min"] = minimum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _targets(targets),
    }


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str = "short",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Panel:
    steps = [{"value": value, "color": color} for value, color in thresholds or [(None, "green")]]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": "auto",
            "orientation": "auto",
        },
        "targets": _targets([Target(expr)]),
    }


def bars(title: str, description: str, expr: str, legend: str) -> Panel:
    """A horizontal bar gauge over an instant query (a top-N over the dashboard range)."""
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": "short",
                "min": 0,
                "color": {"mode": "continuous-BlYlRd"},
                "thresholds": {"mode": "absolute", "steps": [{"value": None, "color": "green"}]},
            },
            "overrides": [],
        },
        "options": {
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "targets": _targets([Target(expr, legend, instant=True)]),
    }


def table(title: str, description: str, expr: str) -> Panel:
    """One row per label combination of an instant query (versions across workers)."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        "targets": [{**_targets([Target(expr, instant=True)])[0], "format": "table"}],
    }


def quantiles(
    metric: str, selector: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> list[Target]:
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return [
        Target(
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in qs
    ]


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
    }


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
    }


WORKER_VARIABLES = [
    query_variable(
        "namespace", "Namespace", "label_values(moderator_posts_consumed_total, namespace)"
    ),
    query_variable(
        "job",
        "Worker job",
        'label_values(moderator_posts_consumed_total{namespace=~"$namespace"}, job)',
    ),
]
RAY_VARIABLES = [
    query_variable(
        "application",
        "Serve application",
        "label_values(ray_serve_deployment_replica_healthy, application)",
    ),
    query_variable(
        "deployment",
        "Serve deployment",
        "label_values(ray_serve_deployment_replica_healthy"
        '{application=~"$application"}, deployment)',
    ),
]


def dashboard(
    uid: str, title: str, description: str, layout: Layout, variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["moderator"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Moderator dashboards",
                "type": "dashboards",
                "tags": ["moderator"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout.panels,
    }


def rate_of(metric: str, selector: str = W, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}{{{selector}}}[{RATE}]))"
