"""The alert rules in deploy/prometheus/: promtool accepts them and their unit tests pass.

`promtool test rules` runs deploy/prometheus/tests/*.test.yaml; this module also checks
that every alert has a case where it fires and one where it stays quiet, and that
every moderator_* series a rule reads is one the workers export.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.paths import REPO
from tests.unit.observability_support import (
    moderator_series_names,
    promtool,
    ray_series_names,
    referenced,
)

RULE_FILES = sorted((REPO / "deploy" / "prometheus").glob("*.yaml"))
TEST_FILES = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.test.yaml"))


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def test_rule_files_exist() -> None:
    assert RULE_FILES and TEST_FILES
    assert len(_alerts()) >= 6


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, set[bool]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    alerts = {rule["alert"] for rule in _alerts()}
    untested = {alert for alert in alerts if cases.get(alert) != {True, False}}
    assert not untested, f"need a firing and a quiet case: {sorted(untested)}"
    assert set(cases) <= alerts, f"tests for unknown alerts: {sorted(set(cases) - alerts)}"


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = annotations["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        docs = (REPO / annotations["runbook"].split("#", 1)[0]).read_text()
        assert f"### {rule['alert']}" in docs, f"{rule['alert']} is not in the runbook"


def test_rules_read_only_metrics_the_workers_export() -> None:
    """moderator_* from the workers' registry; ray_serve_* and the replica's ray_moderator_*
    as Ray exported them (tests/data/ray_serve_metrics.prom)."""
    exported, ray = moderator_series_names(), ray_series_names()
    for rule in _rules():
        expr = rule["expr"]
        unknown = referenced(expr, "moderator_") - exported
        unknown |= (referenced(expr, "ray_serve_") | referenced(expr, "ray_moderator_")) - ray
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"
