"""Threshold rules found in a policy, their literals rewritten in the YAML text (everything else
byte for byte), and `moderator calibrate` end to end on generated decisions and verdicts
(moderator.calibrate.synthetic: not reviewer data)."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moderator import cli
from moderator.calibrate.join import CalibrationError
from moderator.calibrate.run import CalibrationOptions, calibrate
from moderator.calibrate.synthetic import (
    ReviewSelection,
    synthetic_decisions,
    synthetic_verdicts,
)
from moderator.calibrate.thresholds import (
    find_threshold_rules,
    order_warnings,
    rewrite_policy,
    rules_to_tune,
)
from moderator.policy.document import PolicyDocument
from moderator.policy.inputs import PolicyInput
from moderator.policy.loader import load_policy, read_document
from moderator.schema.decision import Action
from tests.paths import DEFAULT_POLICY

SMALL_POLICY = """\
# a comment that must stay
name: small
version: '7'
categories: [hate, spam]
rules:
  - id: hate.block   # trailing comment
    when: 'scores["hate"] >= 0.9'
    action: block
  - id: hate.review
    when: >
      scores.hate
      >= .6
    action: review
  - id: hate.mixed
    when: scores.hate >= 0.3 && scores.spam >= 0.5
    action: label
  - id: spam.shadow
    when: scores.spam > 0.5
    action: block
    mode: shadow
"""


def _rules(path: Path):  # type: ignore[no-untyped-def]
    document, located = read_document(path, PolicyDocument, "policy")
    return find_threshold_rules(document, located)


def test_threshold_rules_of_the_default_policy() -> None:
    rules, others = _rules(DEFAULT_POLICY)
    by_id = {rule.rule_id: rule for rule in rules}
    assert (by_id["hate.block"].category, by_id["hate.block"].value) == ("hate", 0.85)
    assert by_id["hate.block"].action is Action.BLOCK
    assert "shadow.hate.block_at_075" not in by_id  # shadow rules are not enforced thresholds
    assert "legacy.swimwear.review" not in by_id  # disabled
    assert "weapons.with_violence" not in by_id and "weapons.with_violence" in others["weapons"]
    assert [r.rule_id for r in rules_to_tune(rules, "hate", None)] == ["hate.block"]
    assert [r.rule_id for r in rules_to_tune(rules, "hate", Action.LABEL)] == ["hate.label"]
    assert [r.rule_id for r in rules_to_tune(rules, "offensive", None)] == ["offensive.review"]
    assert rules_to_tune(rules, "sexual", Action.BLOCK) == []


def test_rewrite_changes_only_the_literals(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_POLICY)
    rules, others = _rules(path)
    assert [(r.rule_id, r.value) for r in rules] == [("hate.block", 0.9), ("hate.review", 0.6)]
    assert others == {"hate": ["hate.mixed"], "spam": ["hate.mixed"]}
    text, edits = rewrite_policy(path, {0: "0.75", 1: "0.55"}, "7-calibrated")
    changed = [
        line
        for line in difflib.ndiff(SMALL_POLICY.splitlines(), text.splitlines())
        if line[:1] in "+-"
    ]
    assert changed == [
        "- version: '7'",
        '+ version: "7-calibrated"',
        "-     when: 'scores[\"hate\"] >= 0.9'",
        "+     when: 'scores[\"hate\"] >= 0.75'",
        "-       >= .6",
        "+       >= 0.55",
    ]
    assert [(e.rule_id, e.line, e.old, e.new) for e in edits] == [
        ("version", 3, "'7'", '"7-calibrated"'),
        ("hate.block", 7, "0.9", "0.75"),
        ("hate.review", 12, ".6", "0.55"),
    ]
    (tmp_path / "new.yaml").write_text(text)
    policy = load_policy(tmp_path / "new.yaml")
    assert policy.qualified_version == "small@7-calibrated"
    assert policy.decide(PolicyInput(scores={"hate": 0.8})).action is Action.BLOCK
    assert policy.decide(PolicyInput(scores={"hate": 0.7})).action is Action.REVIEW


def test_rewrite_refuses_a_when_without_one_comparison(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_POLICY)
    with pytest.raises(CalibrationError, match=r"small.yaml:15: expected one score comparison"):
        rewrite_policy(path, {2: "0.4"})


def test_order_warnings_name_the_crossed_rule() -> None:
    rules, _ = _rules(DEFAULT_POLICY)
    tuned = rules_to_tune(rules, "hate", None)
    assert order_warnings(rules, tuned, 0.7) == []
    assert order_warnings(rules, tuned, 0.5) == [
        "hate.block (block) at 0.5 is below hate.review (review) at 0.6"
    ]


@pytest.fixture()
def reviewed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Synthetic decisions and verdicts, and a copy of the default policy with its files."""
    shutil.copytree(DEFAULT_POLICY.parent, tmp_path / "policies")
    decisions, truth = synthetic_decisions(1500, ["hate", "violence", "spam"], seed=2)
    verdicts = synthetic_verdicts(decisions, truth, seed=2)
    decisions_path, verdicts_path = tmp_path / "decisions.jsonl", tmp_path / "verdicts.jsonl"
    decisions_path.write_text("".join(d.model_dump_json() + "\n" for d in decisions))
    verdicts_path.write_text("".join(v.model_dump_json() + "\n" for v in verdicts))
    return verdicts_path, decisions_path, tmp_path / "policies" / "default.yaml"


def _calibrate(reviewed: tuple[Path, Path, Path], out: Path, *args: str):  # type: ignore[no-untyped-def]
    verdicts, decisions, policy = reviewed
    command = ["calibrate", "--verdicts", str(verdicts), "--decisions", str(decisions)]
    return CliRunner().invoke(
        cli.app, [*command, "--policy", str(policy), "--out", str(out), *args]
    )


def test_calibrate_command_end_to_end(reviewed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _calibrate(reviewed, out, "--category", "hate", "--category", "violence")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "calibration.json").read_text())
    hate = report["categories"]["hate"]
    recommended = hate["recommendation"]
    assert recommended["precision"] >= 0.9 and recommended["support"] >= 30
    assert hate["rules"][0]["rule"] == "hate.block"
    assert hate["rules"][0]["new"] == f"{recommended['threshold']:.2f}"
    new_policy = Path(report["new_policy"])
    assert new_policy == reviewed[2].with_name("default.calibrated.yaml")
    assert f"scores.hate >= {hate['rules'][0]['new']}" in new_policy.read_text()
    assert load_policy(new_policy).version == "4-calibrated"
    backtest = report["backtest"]["calibrated"]
    assert backtest["policy"] == "default@4-calibrated" and backtest["decisions"] == 1500
    assert (out / "hate.png").read_bytes()[:4] == b"\x89PNG" and (out / "violence.png").exists()
    assert (out / "policy.diff").read_text().count("\n+    when: scores.") == 2
    assert "spam" not in report["categories"]  # not a policy category


def test_calibrate_command_names_bad_inputs(
    reviewed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    unknown = _calibrate(reviewed, tmp_path / "out", "--category", "spam")
    assert unknown.exit_code == 2
    assert "category 'spam' is not in" in unknown.output
    unscored = _calibrate(reviewed, tmp_path / "out", "--category", "sexual")
    assert unscored.exit_code == 2 and "no decision in" in unscored.output
    with reviewed[0].open("a") as handle:
        handle.write('{"verdict_id": "x"}\n')
    lines = reviewed[0].read_text().count("\n")
    bad = _calibrate(reviewed, tmp_path / "out", "--category", "hate")
    assert bad.exit_code == 2
    assert f"verdicts.jsonl:{lines}: not a verdict: post_id: Field required" in bad.output
    assert not (tmp_path / "out").exists()


def _hate_data(tmp_path: Path) -> tuple[Path, Path]:
    """10 posts at 0.30 (2 confirmed) and 50 at 0.95 (all confirmed), all reviewed."""
    decisions, _ = synthetic_decisions(60, ["hate"], seed=5)
    decisions = [
        d.model_copy(update={"scores": {"hate": 0.3 if i < 10 else 0.95}})
        for i, d in enumerate(decisions)
    ]
    truth = {d.post_id: {"hate"} if i < 2 or i >= 10 else set() for i, d in enumerate(decisions)}
    everyone = ReviewSelection(review_share=1, appeal_share=1, audit_share=1, reviewer_error=0)
    verdicts = synthetic_verdicts(decisions, truth, seed=5, selection=everyone)
    decisions_path, verdicts_path = tmp_path / "d.jsonl", tmp_path / "v.jsonl"
    decisions_path.write_text("".join(d.model_dump_json() + "\n" for d in decisions))
    verdicts_path.write_text("".join(v.model_dump_json() + "\n" for v in verdicts))
    return verdicts_path, decisions_path


@pytest.mark.parametrize(("current", "written"), [("0.90", None), ("0.97", "0.95")])
def test_a_threshold_selecting_the_same_reviewed_posts_is_kept(
    tmp_path: Path, current: str, written: str | None
) -> None:
    verdicts, decisions = _hate_data(tmp_path)
    policy = tmp_path / "small.yaml"
    policy.write_text(SMALL_POLICY.replace("0.9'", f"{current}'"))
    options = CalibrationOptions(
        verdicts, decisions, policy, min_support=20, categories=("hate",), action=Action.BLOCK
    )
    result = calibrate(options)
    hate = result.categories[0]
    assert hate.new_value == "0.95"  # 0.31 would do too, over scores nobody reviewed
    if written is None:
        assert hate.kept == ["hate.block"] and result.new_policy is None
        assert hate.notes == ["hate.block kept at 0.9: it selects the same reviewed posts as 0.95"]
    else:
        assert hate.kept == [] and result.new_policy is not None
        assert f"""scores["hate"] >= {written}""" in result.new_policy.read_text()
        assert result.calibrated is not None and result.calibrated.decisions == 60


def test_decisions_of_several_models_are_named(tmp_path: Path) -> None:
    decisions, truth = synthetic_decisions(40, ["hate"], seed=6)
    decisions = [
        d.model_copy(update={"model_version": "m1" if i % 2 else "m2"})
        for i, d in enumerate(decisions)
    ]
    everyone = ReviewSelection(review_share=1, appeal_share=1, audit_share=1)
    verdicts = synthetic_verdicts(decisions, truth, seed=6, selection=everyone)
    (tmp_path / "d.jsonl").write_text("".join(d.model_dump_json() + "\n" for d in decisions))
    (tmp_path / "v.jsonl").write_text("".join(v.model_dump_json() + "\n" for v in verdicts))
    policy = tmp_path / "small.yaml"
    policy.write_text(SMALL_POLICY)
    result = calibrate(CalibrationOptions(tmp_path / "v.jsonl", tmp_path / "d.jsonl", policy))
    assert result.notes == [
        "reviewed decisions come from 2 model versions (m1, m2): pass the decisions of one model"
    ]


def test_rewrite_in_a_double_quoted_scalar_with_escapes(tmp_path: Path) -> None:
    path = tmp_path / "dq.yaml"
    path.write_text(
        'name: dq\nversion: "1"\ncategories: [hate]\nrules:\n'
        '  - id: hate.block\n    when: "scores[\\"hate\\"] >= 0.9"\n    action: block\n'
    )
    rules, _ = _rules(path)
    assert [(r.rule_id, r.value) for r in rules] == [("hate.block", 0.9)]
    text, _ = rewrite_policy(path, {0: "0.80"})
    assert '    when: "scores[\\"hate\\"] >= 0.80"\n' in text
    (tmp_path / "new.yaml").write_text(text)
    assert load_policy(tmp_path / "new.yaml").rules[0].when == 'scores["hate"] >= 0.80'
