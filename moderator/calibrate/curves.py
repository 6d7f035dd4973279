"""Precision and recall of "score >= threshold" against reviewers' judgements, per category.

Only reviewed posts count, and only those the verdict judges for the category (see
`moderator.calibrate.join.judge`). Precision at t: of the judged posts scoring >= t, the share
reviewers confirmed. Recall at t: of the confirmed posts, the share scoring >= t. The full curve
comes from scikit-learn's `precision_recall_curve`; the recommendation is read on a grid of
round thresholds (0.01 steps by default) so that the value written into the policy is exactly
the one whose figures are reported. Of the grid thresholds with the same reviewed posts at or
above them, the highest is recommended: lower ones would only reach into unreviewed scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from moderator.calibrate.join import Judgement, judge
from moderator.schema.decision import Decision
from moderator.schema.verdict import Verdict

WILSON_Z = 1.96  # 95% two-sided


@dataclass(frozen=True)
class Point:
    """The figures of "score >= threshold" over the judged posts."""

    threshold: float
    support: int
    """Judged posts scoring >= threshold: the number behind the precision."""
    true_positives: int
    precision: float | None
    recall: float | None
    precision_lower_95: float | None
    """Wilson score interval's lower end: the precision the data supports at 95%."""

    def as_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "support": self.support,
            "true_positives": self.true_positives,
            "precision": _rounded(self.precision),
            "recall": _rounded(self.recall),
            "precision_lower_95": _rounded(self.precision_lower_95),
        }


@dataclass(frozen=True)
class Recommendation:
    point: Point | None
    """The lowest grid threshold reaching the target with enough support; None when none does."""
    reason: str
    """Why there is no recommendation ('' when there is one)."""


@dataclass
class CategoryCurve:
    category: str
    scores: np.ndarray[Any, np.dtype[np.float64]]
    positive: np.ndarray[Any, np.dtype[np.bool_]]
    unjudged: int = 0
    missing_score: int = 0
    """Judged posts whose decision has no score for the category (the model did not score it)."""
    curve: list[Point] = field(default_factory=list)
    recommendation: Recommendation = field(default_factory=lambda: Recommendation(None, ""))

    @property
    def positives(self) -> int:
        return int(self.positive.sum())

    @property
    def negatives(self) -> int:
        return len(self.positive) - self.positives

    def at(self, threshold: float) -> Point:
        """Figures of one threshold (any value, not only the curve's)."""
        return self.at_many([threshold])[0]

    def at_many(self, thresholds: Sequence[float]) -> list[Point]:
        order = np.argsort(self.scores, kind="stable")
        ranked, hits = self.scores[order], self.positive[order]
        # hits_from[i]: confirmed posts among ranked[i:]; the extra last entry is 0.
        hits_from = np.concatenate([np.cumsum(hits[::-1])[::-1], [0]]).astype(int)
        starts = np.searchsorted(ranked, np.asarray(thresholds, dtype=float), side="left")
        total, positives = len(ranked), self.positives
        points = []
        for threshold, start in zip(thresholds, starts, strict=True):
            support = int(total - start)
            true_positives = int(hits_from[start])
            precision = true_positives / support if support else None
            points.append(
                Point(
                    threshold=float(threshold),
                    support=support,
                    true_positives=true_positives,
                    precision=precision,
                    recall=true_positives / positives if positives else None,
                    precision_lower_95=wilson_lower(true_positives, support),
                )
            )
        return points


def wilson_lower(successes: int, trials: int, z: float = WILSON_Z) -> float | None:
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - spread) / denominator)


def threshold_grid(resolution: float) -> list[float]:
    decimals = max(0, -math.floor(math.log10(resolution)))
    steps = round(1 / resolution)
    return [round(i * resolution, decimals) for i in range(1, steps + 1)]


def category_curve(
    pairs: Sequence[tuple[Decision, Verdict]],
    category: str,
    target_precision: float,
    min_support: int,
    resolution: float = 0.01,
) -> CategoryCurve:
    scores: list[float] = []
    labels: list[bool] = []
    unjudged = missing = 0
    for decision, verdict in pairs:
        judgement = judge(verdict, category)
        if judgement is Judgement.UNJUDGED:
            unjudged += 1
            continue
        score = decision.scores.get(category)
        if score is None:
            missing += 1
            continue
        scores.append(score)
        labels.append(judgement is Judgement.POSITIVE)
    result = CategoryCurve(
        category,
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=np.bool_),
        unjudged=unjudged,
        missing_score=missing,
    )
    if result.positives:
        # precision_recall_curve's thresholds are the distinct scores, ascending; its last
        # (precision 1, recall 0) point has no threshold and is dropped.
        _, _, thresholds = precision_recall_curve(result.positive, result.scores)
        result.curve = result.at_many([float(t) for t in thresholds])
    result.recommendation = recommend(result, target_precision, min_support, resolution)
    return result


def recommend(
    curve: CategoryCurve, target_precision: float, min_support: int, resolution: float
) -> Recommendation:
    judged = len(curve.scores)
    if judged < min_support:
        return Recommendation(
            None, f"only {judged} reviewed posts judged for {curve.category} (< {min_support})"
        )
    if not curve.positives:
        return Recommendation(None, f"reviewers confirmed no {curve.category} post")
    best: Point | None = None
    for point in curve.at_many(threshold_grid(resolution)):
        if point.support < min_support or point.precision is None:
            continue
        if point.precision >= target_precision:
            return Recommendation(_closest_to_evidence(curve, point, resolution), "")
        if best is None or point.precision > (best.precision or 0.0):
            best = point
    if best is None:
        return Recommendation(None, f"no threshold has {min_support} reviewed posts at or above it")
    return Recommendation(
        None,
        f"precision never reaches {target_precision:g} with >= {min_support} reviewed posts "
        f"(best {best.precision:.3f} at {best.threshold:g}, {best.support} posts)",
    )


def _closest_to_evidence(curve: CategoryCurve, point: Point, resolution: float) -> Point:
    """The highest grid threshold with the same reviewed posts at or above it as `point`.

    Every threshold between two reviewed scores has the same figures; the lowest of them would
    move the policy over scores nobody reviewed, so the one just below the lowest included
    score is taken instead."""
    lowest_included = float(curve.scores[curve.scores >= point.threshold].min())
    grid = [t for t in threshold_grid(resolution) if point.threshold <= t <= lowest_included]
    return curve.at(grid[-1]) if grid else point


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
