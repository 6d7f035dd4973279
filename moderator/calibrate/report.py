"""calibration.json and one PNG per category (precision and recall against threshold)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from moderator.calibrate.curves import threshold_grid
from moderator.calibrate.run import CalibrationResult, CategoryResult
from moderator.policy.backtest import BacktestReport

DEFINITION = (
    "per category, in this order: in categories_rejected -> negative; in categories_confirmed "
    "-> positive; outcome no_violation -> negative; outcome violation with the category among "
    "the reviewer's labels -> positive; otherwise unjudged (left out). Precision and recall "
    "are over reviewed, judged posts only."
)


def report_json(result: CalibrationResult) -> dict[str, Any]:
    options = result.options
    return {
        "policy": {
            "path": str(options.policy),
            "name": result.policy_name,
            "version": result.policy_version,
        },
        "inputs": {"verdicts": str(options.verdicts), "decisions": str(options.decisions)},
        "settings": {
            "target_precision": options.target_precision,
            "min_support": options.min_support,
            "action": options.action.value if options.action else None,
            "resolution": options.resolution,
        },
        "definition": DEFINITION,
        "join": result.joined.summary() | {"unmatched_examples": result.joined.unmatched_examples},
        "unscored_categories": result.unscored_categories,
        "categories": {
            item.curve.category: _category(item, threshold_grid(options.resolution))
            for item in result.categories
        },
        "new_policy": str(result.new_policy) if result.new_policy else None,
        "notes": result.notes
        + ([result.relative_files_note] if result.relative_files_note else []),
        "edits": [
            {"rule": edit.rule_id, "line": edit.line, "old": edit.old, "new": edit.new}
            for edit in result.edits
        ],
        "backtest": {
            "baseline": _backtest(result.baseline),
            "calibrated": _backtest(result.calibrated),
        },
    }


def _category(item: CategoryResult, grid: list[float]) -> dict[str, Any]:
    curve = item.curve
    point = curve.recommendation.point
    return {
        "judged": len(curve.scores),
        "positives": curve.positives,
        "negatives": curve.negatives,
        "unjudged": curve.unjudged,
        "missing_score": curve.missing_score,
        "recommendation": point.as_json() if point else None,
        "no_recommendation_because": curve.recommendation.reason or None,
        "rules": [
            {
                "rule": rule.rule_id,
                "line": rule.line,
                "action": rule.action.value,
                "current": rule.value,
                "current_figures": item.current[rule.rule_id].as_json(),
                "new": None if rule.rule_id in item.kept else item.new_value,
            }
            for rule in item.tuned
        ],
        "also_read_by": item.also_reads,
        "notes": item.notes,
        # On the grid: every distinct score would make the file grow with the data.
        "curve": [p.as_json() for p in curve.at_many(grid) if p.support] if curve.curve else [],
    }


def _backtest(report: BacktestReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "policy": report.policy,
        "decisions": report.decisions,
        "changed_from_logged": report.changed_count,
        "actions": {action.value: n for action, n in sorted(report.new_actions.items())},
        "logged_actions": {action.value: n for action, n in sorted(report.old_actions.items())},
        "unreplayable_rules": report.unreplayable_rules,
    }


def write_report(result: CalibrationResult, out: Path) -> list[Path]:
    """calibration.json, policy.diff (when the policy changed) and <category>.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "calibration.json"]
    written[0].write_bytes(orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2))
    if result.diff:
        (out / "policy.diff").write_text(result.diff, encoding="utf-8")
        written.append(out / "policy.diff")
    for item in result.categories:
        if item.curve.curve:
            path = out / f"{item.curve.category}.png"
            plot_category(item, result.options.target_precision, path)
            written.append(path)
    return written


def plot_category(item: CategoryResult, target: float, path: Path) -> None:
    # Figure without pyplot: no global backend state; savefig renders with Agg.
    from matplotlib.figure import Figure

    curve = item.curve
    thresholds = [p.threshold for p in curve.curve]
    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    axes = figure.add_subplot()
    # Every curve point has support and a confirmed post, so neither figure is None (NaN: gap).
    precision = [math.nan if p.precision is None else p.precision for p in curve.curve]
    recall = [math.nan if p.recall is None else p.recall for p in curve.curve]
    axes.plot(thresholds, precision, label="precision", color="C0")
    axes.plot(thresholds, recall, label="recall", color="C1")
    axes.axhline(target, color="C0", linestyle=":", linewidth=1, label=f"target {target:g}")
    for rule in item.tuned:
        axes.axvline(rule.value, color="grey", linestyle="--", linewidth=1)
        axes.annotate(f"{rule.rule_id} now", (rule.value, 0.02), rotation=90, fontsize=7)
    point = curve.recommendation.point
    if point is not None:
        axes.axvline(point.threshold, color="C2", linewidth=1.5, label=f"new {point.threshold:g}")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"threshold on scores.{curve.category}")
    axes.set_ylabel("share of reviewed posts")
    axes.set_title(
        f"{curve.category}: {curve.positives} confirmed, {curve.negatives} rejected (reviewed)"
    )
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
