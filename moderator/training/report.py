"""Thresholds chosen on validation, per-category test figures, the JSON report and its PNGs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from moderator.training.dataset import Dataset
from moderator.training.metrics import (
    CategoryMetrics,
    best_f1_threshold,
    category_metrics,
    threshold_for_precision,
)
from moderator.training.splits import Splits
from moderator.training.trainer import History, TrainConfig

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
ROC_FILE = "roc.png"
CURVES_FILE = "training.png"


def choose_thresholds(
    labels: np.ndarray, scores: np.ndarray, categories: list[str], target_precision: float
) -> tuple[dict[str, float], dict[str, float | None]]:
    """Per category: the best-F1 threshold, and the lowest one reaching target_precision."""
    chosen, suggested = {}, {}
    for c, name in enumerate(categories):
        chosen[name] = round(best_f1_threshold(labels[:, c], scores[:, c]), 6)
        at = threshold_for_precision(labels[:, c], scores[:, c], target_precision)
        suggested[name] = None if at is None else round(at, 6)
    return chosen, suggested


def evaluate_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    categories: list[str],
    thresholds: dict[str, float],
    target_precision: float,
    suggested: dict[str, float | None] | None = None,
) -> dict[str, CategoryMetrics]:
    suggested = suggested or {}
    return {
        name: category_metrics(
            labels[:, c],
            scores[:, c],
            thresholds.get(name, 0.5),
            target_precision,
            suggested.get(name),
        )
        for c, name in enumerate(categories)
    }


def metrics_table(metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows for a console table: category, n+, AUROC, AP, F1, accuracy, ECE, thresholds."""

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    return [
        [
            name,
            str(m["positives"]),
            fmt(m["auroc"]),
            fmt(m["average_precision"]),
            fmt(m["f1"]),
            fmt(m["accuracy"]),
            fmt(m["ece"]),
            fmt(m["threshold"]),
            fmt(m["suggested"]["threshold"] if m["suggested"] else None),
        ]
        for name, m in metrics.items()
    ]


def to_jsonable(report: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON types only (metrics models → dicts), as written to report.json."""
    result: dict[str, Any] = json.loads(json.dumps(report, default=_jsonable))
    return result


def write_json(directory: Path, report: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_FILE
    path.write_text(json.dumps(to_jsonable(report), indent=2) + "\n", encoding="utf-8")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def plot_roc(path: Path, labels: np.ndarray, scores: np.ndarray, categories: list[str]) -> Path:
    """One ROC curve per category (those with both classes), AUROC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    for c, name in enumerate(categories):
        y = labels[:, c]
        if y.min(initial=1) == y.max(initial=0):
            continue
        fpr, tpr, _ = roc_curve(y, scores[:, c])
        axis.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, scores[:, c]):.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_history(path: Path, history: History) -> Path:
    """Training and validation loss, and validation mean AUROC, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, auroc_axis) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    epochs = range(1, len(history.train_loss) + 1)
    loss_axis.plot(epochs, history.train_loss, label="train")
    loss_axis.plot(epochs, history.val_loss, label="validation")
    loss_axis.set(xlabel="epoch", ylabel="weighted BCE loss", title="loss")
    loss_axis.legend()
    auroc_axis.plot(epochs, history.val_auroc, label="stage 1")
    if history.stage2_val_auroc:
        stage2 = range(len(epochs) + 1, len(epochs) + 1 + len(history.stage2_val_auroc))
        auroc_axis.plot(stage2, history.stage2_val_auroc, label="stage 2")
    auroc_axis.axvline(history.best_epoch + 1, linestyle=":", color="grey")
    auroc_axis.set(xlabel="epoch", ylabel="mean AUROC", title="validation AUROC")
    auroc_axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def finish_report(
    report: dict[str, Any],
    splits: Splits,
    val_scores: np.ndarray,
    test_scores: Callable[[Dataset], np.ndarray],
    thresholds: dict[str, float],
    suggested: dict[str, float | None],
    config: TrainConfig,
    history: History,
    report_dir: Path,
) -> dict[str, Any]:
    """Add what every training report has (thresholds, validation and held-out figures, the
    history) to the kind's own fields; write report.json, roc.png and training.png."""
    categories = splits.train.categories
    report.update(
        {
            "thresholds": thresholds,
            "suggested_thresholds": suggested,
            "validation": evaluate_scores(
                splits.val.labels(),
                val_scores,
                categories,
                thresholds,
                config.target_precision,
                suggested,
            ),
            "history": {
                "train_loss": history.train_loss,
                "val_loss": history.val_loss,
                "val_auroc": history.val_auroc,
                "best_epoch": history.best_epoch,
                "stage2_val_auroc": history.stage2_val_auroc,
            },
        }
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    if splits.test is not None:
        labels = splits.test.labels()
        scores = test_scores(splits.test)
        report["test"] = evaluate_scores(
            labels, scores, categories, thresholds, config.target_precision, suggested
        )
        report["test_rows"] = len(labels)
        plot_roc(report_dir / ROC_FILE, labels, scores, categories)
    plot_history(report_dir / CURVES_FILE, history)
    write_json(report_dir, report)
    return to_jsonable(report)
