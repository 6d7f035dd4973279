"""Generated decisions and reviewer verdicts, for tests and a demonstration only.

There is no real reviewer data in this repository. This generator draws a hidden truth per
post and category, scores that overlap the way a real classifier's do (violating posts
Beta(5, 2), others Beta(1, 8)), a review selection with the bias real queues have (every
`review` decision, a share of appealed blocks, a small random audit of the rest) and reviewers
who are sometimes wrong. Figures computed from it say that the code works, not how good any
model or policy is (docs/calibration.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from moderator.schema.decision import Action, Decision, SourceRef
from moderator.schema.verdict import DecisionRef, Outcome, Verdict

BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReviewSelection:
    review_share: float = 1.0
    """Share of `review` decisions that reviewers decide."""
    appeal_share: float = 0.2
    """Share of enforced (`block`, `label`) decisions that are appealed."""
    audit_share: float = 0.05
    """Random audit of every other decision."""
    reviewer_error: float = 0.03
    """Chance that a reviewer gets one category wrong."""


def synthetic_decisions(
    count: int,
    categories: Sequence[str],
    seed: int = 0,
    base_rate: float = 0.08,
    model_version: str = "synthetic-model",
    policy_version: str = "default@synthetic",
) -> tuple[list[Decision], dict[str, set[str]]]:
    """(decisions, post_id → categories the post truly violates)."""
    rng = np.random.default_rng(seed)
    decisions, truth = [], {}
    for i in range(count):
        violates = {c for c in categories if rng.random() < base_rate}
        scores = {
            c: round(float(rng.beta(5, 2) if c in violates else rng.beta(1, 8)), 6)
            for c in categories
        }
        top = max(scores.values(), default=0.0)
        action = (
            Action.BLOCK
            if top >= 0.85
            else Action.REVIEW
            if top >= 0.6
            else Action.LABEL
            if top >= 0.4
            else Action.ALLOW
        )
        post_id = f"synthetic-{seed}-{i}"
        decisions.append(
            Decision(
                post_id=post_id,
                author_id=f"author-{int(rng.integers(0, 500))}",
                action=action,
                labels=sorted(c for c, s in scores.items() if s >= 0.4),
                scores=scores,
                policy_version=policy_version,
                model_version=model_version,
                source=SourceRef(
                    topic="posts",
                    partition=i % 4,
                    offset=i // 4,
                    timestamp_ms=int(BASE_TIME.timestamp() * 1000) + i * 1000,
                ),
            )
        )
        truth[post_id] = violates
    return decisions, truth


def synthetic_verdicts(
    decisions: Sequence[Decision],
    truth: dict[str, set[str]],
    seed: int = 0,
    selection: ReviewSelection | None = None,
) -> list[Verdict]:
    """Verdicts on the decisions `selection` sends to reviewers, judged against `truth`."""
    selection = selection or ReviewSelection()
    rng = np.random.default_rng(seed + 1)
    verdicts = []
    for decision in decisions:
        if decision.action is Action.REVIEW:
            share = selection.review_share
        elif decision.action is not Action.ALLOW:
            share = selection.appeal_share
        else:
            share = selection.audit_share
        if rng.random() >= share:
            continue
        seen = set(truth.get(decision.post_id, set()))
        scored = list(decision.scores)
        if scored and rng.random() < selection.reviewer_error:
            seen ^= {scored[int(rng.integers(0, len(scored)))]}
        verdicts.append(_verdict(decision, seen, rng))
    return verdicts


def _verdict(decision: Decision, seen: set[str], rng: np.random.Generator) -> Verdict:
    confirmed = sorted(seen & set(decision.scores))
    appeal = decision.action in (Action.BLOCK, Action.LABEL)
    return Verdict(
        verdict_id=f"verdict-{decision.post_id}",
        post_id=decision.post_id,
        author_id=decision.author_id,
        decision=DecisionRef(
            post_id=decision.post_id,
            model_version=decision.model_version,
            policy_version=decision.policy_version,
            action=decision.action,
        ),
        outcome=Outcome.VIOLATION if confirmed else Outcome.NO_VIOLATION,
        action=Action.BLOCK if confirmed else Action.ALLOW,
        labels=confirmed,
        categories_confirmed=confirmed,
        categories_rejected=sorted(set(decision.labels) - set(confirmed)),
        reviewer_id=f"reviewer-{int(rng.integers(0, 20))}",
        decided_at=BASE_TIME + timedelta(days=1, seconds=int(rng.integers(0, 86_400))),
        appeal_id=f"appeal-{decision.post_id}" if appeal else None,
    )


def truth_from_scores(decisions: Sequence[Decision], seed: int = 0) -> dict[str, set[str]]:
    """A made-up truth for decisions that have none (the demo's): each category is violated
    with probability equal to its score, as if the model were perfectly calibrated."""
    rng = np.random.default_rng(seed)
    return {
        d.post_id: {c for c, score in d.scores.items() if rng.random() < score} for d in decisions
    }
