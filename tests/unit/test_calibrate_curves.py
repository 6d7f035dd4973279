"""Calibration maths: what a verdict says per category, the join, precision/recall at a
threshold, and the recommended threshold. Decisions and verdicts are built here or come from
moderator.calibrate.synthetic (generated, not reviewer data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from moderator.calibrate.curves import (
    CategoryCurve,
    category_curve,
    recommend,
    threshold_grid,
    wilson_lower,
)
from moderator.calibrate.join import CalibrationError, Judgement, judge, load_joined
from moderator.calibrate.synthetic import synthetic_decisions, synthetic_verdicts
from moderator.schema.decision import Action, Correction, Decision
from moderator.schema.verdict import DecisionRef, Outcome, Verdict

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _verdict(decision: Decision, outcome: Outcome = Outcome.VIOLATION, **fields: object) -> Verdict:
    values: dict[str, object] = {
        "verdict_id": f"v-{decision.post_id}",
        "post_id": decision.post_id,
        "author_id": decision.author_id,
        "decision": DecisionRef(
            post_id=decision.post_id,
            model_version=decision.model_version,
            policy_version=decision.policy_version,
            action=decision.action,
        ),
        "outcome": outcome,
        "action": Action.BLOCK if outcome is Outcome.VIOLATION else Action.ALLOW,
        "reviewer_id": "r1",
        "decided_at": T0,
    }
    values.update(fields)
    return Verdict.model_validate(values)


def _decisions(count: int = 3) -> list[Decision]:
    return synthetic_decisions(count, ["hate", "violence"], seed=1)[0]


def test_judgement_precedence() -> None:
    decision = _decisions(1)[0]
    rejected_but_labelled = _verdict(decision, labels=["hate"], categories_rejected=["hate"])
    assert judge(rejected_but_labelled, "hate") is Judgement.NEGATIVE
    confirmed = _verdict(decision, categories_confirmed=["hate"])
    assert judge(confirmed, "hate") is Judgement.POSITIVE
    assert judge(confirmed, "violence") is Judgement.UNJUDGED
    assert judge(_verdict(decision, labels=["violence"]), "violence") is Judgement.POSITIVE
    clean = _verdict(decision, Outcome.NO_VIOLATION)
    assert judge(clean, "hate") is Judgement.NEGATIVE
    assert judge(clean, "violence") is Judgement.NEGATIVE


def test_figures_at_a_threshold_by_hand() -> None:
    curve = CategoryCurve(
        "hate",
        np.array([0.1, 0.4, 0.5, 0.7, 0.9]),
        np.array([False, False, True, True, True]),
    )
    at_half = curve.at(0.5)  # >= 0.5: three posts, all confirmed
    assert (at_half.support, at_half.true_positives) == (3, 3)
    assert at_half.precision == 1.0 and at_half.recall == 1.0
    at_04 = curve.at(0.4)
    assert (at_04.support, at_04.precision, at_04.recall) == (4, 0.75, 1.0)
    at_08 = curve.at(0.8)
    assert (at_08.support, at_08.precision, at_08.recall) == (1, 1.0, pytest.approx(1 / 3))
    above_all = curve.at(0.95)
    assert above_all.support == 0 and above_all.precision is None


def test_curve_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(300), 2)  # ties on purpose
    positive = rng.random(300) < scores
    pairs = []
    for i, (score, hit) in enumerate(zip(scores, positive, strict=True)):
        decision = _decisions(1)[0].model_copy(
            update={"post_id": f"p{i}", "scores": {"hate": float(score)}}
        )
        confirmed = {"categories_confirmed": ["hate"]} if hit else {}
        outcome = Outcome.VIOLATION if hit else Outcome.NO_VIOLATION
        pairs.append((decision, _verdict(decision, outcome, **confirmed)))
    curve = category_curve(pairs, "hate", target_precision=0.8, min_support=10)
    assert [p.threshold for p in curve.curve] == sorted(set(scores.tolist()))
    for point in curve.curve:
        above = scores >= point.threshold
        assert point.support == above.sum()
        assert point.precision == pytest.approx(positive[above].mean())
        assert point.recall == pytest.approx(positive[above].sum() / positive.sum())


def test_recommends_the_lowest_threshold_reaching_the_target() -> None:
    # Posts at 0.30 are mostly wrong (precision 57/65 from 0.01 up to 0.30), the rest all right:
    # 0.31 is the lowest grid threshold reaching 0.9, and 0.31 to 0.45 all select the same
    # reviewed posts, so the one nearest them, 0.45, is recommended.
    scores = np.array([0.3] * 10 + [0.45] * 5 + [0.6] * 40 + [0.8] * 10)
    positive = np.array([True] * 2 + [False] * 8 + [True] * 55)
    curve = CategoryCurve("hate", scores, positive)
    result = recommend(curve, target_precision=0.9, min_support=20, resolution=0.01)
    assert result.point is not None
    assert result.point.threshold == 0.45
    assert (result.point.support, result.point.precision) == (55, 1.0)
    # Demanding more reviewed posts than any threshold above 0.30 has: no recommendation.
    strict = recommend(curve, target_precision=0.9, min_support=60, resolution=0.01)
    assert strict.point is None
    assert "never reaches 0.9 with >= 60 reviewed posts (best 0.877 at 0.01, 65" in strict.reason
    assert "only 65 reviewed posts" in recommend(curve, 0.9, 66, 0.01).reason


def test_no_recommendation_without_confirmed_posts() -> None:
    curve = CategoryCurve("hate", np.array([0.2, 0.9] * 20), np.zeros(40, dtype=bool))
    assert recommend(curve, 0.9, 10, 0.01).reason == "reviewers confirmed no hate post"


def test_wilson_lower_bound_and_grid() -> None:
    assert wilson_lower(8, 10) == pytest.approx(0.4902, abs=1e-4)
    assert wilson_lower(0, 0) is None
    grid = threshold_grid(0.01)
    assert len(grid) == 100 and grid[0] == 0.01 and grid[-1] == 1.0 and 0.29 in grid
    assert threshold_grid(0.05)[:3] == [0.05, 0.1, 0.15]


def _write(path: Path, rows: list[Decision] | list[Verdict]) -> Path:
    path.write_text("".join(row.model_dump_json() + "\n" for row in rows))
    return path


def test_join_counts_unmatched_duplicates_superseded_and_corrections(tmp_path: Path) -> None:
    decisions = _decisions(4)
    first, second, third, fourth = decisions
    correction = first.model_copy(
        update={
            "correction": Correction(
                reason="appeal_overturned", verdict_id="v", corrected_action=Action.BLOCK
            )
        }
    )
    other_model = _verdict(third).model_copy(
        update={"decision": _verdict(third).decision.model_copy(update={"model_version": "m2"})}
    )
    review = _verdict(second, categories_confirmed=["hate"])
    appeal = _verdict(
        second,
        Outcome.NO_VIOLATION,
        verdict_id="appeal-1",
        decided_at=T0 + timedelta(days=1),
        appeal_id="a1",
    )
    joined = load_joined(
        _write(
            tmp_path / "v.jsonl", [_verdict(first), _verdict(first), appeal, review, other_model]
        ),
        _write(tmp_path / "d.jsonl", [first, first, second, third, fourth, correction]),
    )
    summary = joined.summary()
    assert summary["decisions_read"] == 6
    assert summary["duplicate_decisions"] == 1 and summary["corrections_skipped"] == 1
    assert summary["duplicate_verdicts"] == 1 and summary["superseded_verdicts"] == 1
    assert summary["unmatched_verdicts"] == 1 and summary["reviewed_decisions"] == 2
    assert joined.unmatched_examples == [f"{third.post_id} / m2 / {third.policy_version}"]
    by_post = {decision.post_id: verdict for decision, verdict in joined.pairs}
    assert by_post[second.post_id].verdict_id == "appeal-1"  # the later verdict counts
    assert summary["unreviewed_decisions"] == 2


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    decisions = _write(tmp_path / "d.jsonl", _decisions(2))
    verdicts = tmp_path / "v.jsonl"
    verdicts.write_text(_verdict(_decisions(1)[0]).model_dump_json() + "\n\n{not json\n")
    with pytest.raises(CalibrationError, match=r"v\.jsonl:3: not a verdict"):
        load_joined(verdicts, decisions)
    with pytest.raises(CalibrationError, match=r"missing\.jsonl: cannot read"):
        load_joined(tmp_path / "missing.jsonl", decisions)
    good = _write(tmp_path / "good.jsonl", [_verdict(_decisions(1)[0])])
    with decisions.open("a") as handle:
        handle.write('{"post_id": "p", "scores": {"hate": "high"}}\n')
    with pytest.raises(CalibrationError, match=r"d\.jsonl:3: not a decision record: "):
        load_joined(good, decisions)


def test_synthetic_reviews_follow_the_truth() -> None:
    decisions, truth = synthetic_decisions(2000, ["hate"], seed=4)
    verdicts = synthetic_verdicts(decisions, truth, seed=4)
    by_post = {d.post_id: d for d in decisions}
    reviewed = [by_post[v.post_id] for v in verdicts]
    # Every review decision is reviewed, plus appeals of enforced ones and an audit of the rest.
    assert {d.post_id for d in decisions if d.action is Action.REVIEW} <= {
        v.post_id for v in verdicts
    }
    assert any(d.action is Action.ALLOW for d in reviewed)
    assert any(v.appeal_id for v in verdicts)
    agree = sum(
        ("hate" in v.categories_confirmed) == ("hate" in truth[v.post_id]) for v in verdicts
    )
    assert 0.9 < agree / len(verdicts) < 1.0  # reviewers are mostly, not always, right
