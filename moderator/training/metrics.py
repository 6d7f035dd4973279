"""Per-category evaluation: AUROC, average precision, F1/accuracy at a threshold, calibration."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

ECE_BINS = 15


class ThresholdPoint(BaseModel):
    threshold: float
    precision: float
    recall: float


class CategoryMetrics(BaseModel):
    """Figures for one category on one evaluation set; None where a class is absent."""

    positives: int
    negatives: int
    auroc: float | None
    average_precision: float | None
    threshold: float
    f1: float
    accuracy: float
    precision: float
    recall: float
    ece: float
    target_precision: float
    # The lowest threshold reaching target_precision on the set it was chosen on (validation),
    # and what it achieves on this set.
    suggested: ThresholdPoint | None


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if labels.min(initial=1) == labels.max(initial=0):
        return None
    return float(roc_auc_score(labels, scores))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    if labels.sum() == 0:
        return None
    return float(average_precision_score(labels, scores))


def expected_calibration_error(
    labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Mean |positive rate - mean score| over equal-width score bins, weighted by bin size."""
    if len(labels) == 0:
        return 0.0
    which = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(labels[members].mean() - scores[members].mean())
    return float(total / len(labels))


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = scores >= threshold
    positive = labels > 0.5
    tp = float((predicted & positive).sum())
    fp = float((predicted & ~positive).sum())
    fn = float((~predicted & positive).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float((predicted == positive).mean()) if len(labels) else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 (0.5 when there is no positive)."""
    from sklearn.metrics import precision_recall_curve

    if labels.sum() == 0 or labels.sum() == len(labels):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def threshold_for_precision(labels: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """The lowest threshold whose precision reaches target (None if none does)."""
    from sklearn.metrics import precision_recall_curve

    if labels.sum() == 0:
        return None
    precision, _, thresholds = precision_recall_curve(labels, scores)
    reaching = np.flatnonzero(precision[:-1] >= target)
    return float(thresholds[reaching[0]]) if len(reaching) else None


def category_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    target_precision: float,
    suggested_threshold: float | None,
) -> CategoryMetrics:
    point = at_threshold(labels, scores, threshold)
    suggested = None
    if suggested_threshold is not None:
        at = at_threshold(labels, scores, suggested_threshold)
        suggested = ThresholdPoint(
            threshold=suggested_threshold, precision=at["precision"], recall=at["recall"]
        )
    return CategoryMetrics(
        positives=int((labels > 0.5).sum()),
        negatives=int((labels <= 0.5).sum()),
        auroc=auroc(labels, scores),
        average_precision=average_precision(labels, scores),
        threshold=threshold,
        ece=expected_calibration_error(labels, scores),
        target_precision=target_precision,
        suggested=suggested,
        **point,
    )


def mean_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro AUROC over the categories that have both classes (nan when none has)."""
    values = [auroc(labels[:, c], scores[:, c]) for c in range(labels.shape[1])]
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else math.nan
