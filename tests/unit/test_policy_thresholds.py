"""Threshold policies: precedence, labels, validation errors with file:line:field."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderator.policy import PolicyError, load_policy
from moderator.schema import Action

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


POLICY = """\
name: t
version: "3"
thresholds:
  hate: {label: 0.3, review: 0.6, block: 0.9}
  weapons: {review: 0.5}
"""


@pytest.mark.parametrize(
    ("scores", "action", "labels"),
    [
        ({}, Action.ALLOW, []),
        ({"hate": 0.29}, Action.ALLOW, []),
        ({"hate": 0.3}, Action.LABEL, ["hate"]),
        ({"hate": 0.6}, Action.REVIEW, ["hate"]),
        ({"hate": 0.95, "weapons": 0.7}, Action.BLOCK, ["hate", "weapons"]),
        ({"hate": 0.31, "weapons": 0.5}, Action.REVIEW, ["hate", "weapons"]),
        ({"other": 1.0}, Action.ALLOW, []),
    ],
)
def test_most_severe_action_wins(
    tmp_path: Path, scores: dict[str, float], action: Action, labels: list[str]
) -> None:
    policy = load_policy(_write(tmp_path, POLICY))
    result = policy.decide(scores)
    assert result.action is action
    assert result.labels == labels
    assert policy.qualified_version == "t@3"


def test_rules_fired_name_category_and_action(tmp_path: Path) -> None:
    result = load_policy(_write(tmp_path, POLICY)).decide({"hate": 0.95, "weapons": 0.7})
    assert result.rules_fired == ["hate.block", "weapons.review"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (POLICY.replace("0.9}", "1.5}"), "policy.yaml:4: thresholds.hate.block"),
        (POLICY.replace("review: 0.6", "review: 0.2"), "policy.yaml:4: thresholds.hate"),
        (
            POLICY.replace("weapons: {review: 0.5}", "weapons: {revew: 0.5}"),
            "policy.yaml:5: thresholds.weapons.revew",
        ),
        (POLICY.replace('version: "3"\n', ""), "policy.yaml:1: version: Field required"),
        ("name: [unclosed\n", "policy.yaml:2:1: invalid YAML"),
        ("- a list\n", "policy.yaml:1: a policy file must be a mapping"),
    ],
)
def test_invalid_policies_name_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(_write(tmp_path, text))
    assert expected in str(caught.value)


def test_unknown_category_against_model(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, POLICY))
    with pytest.raises(PolicyError, match="weapons"):
        policy.check_categories(["hate"])


def test_shipped_default_policy_loads() -> None:
    policy = load_policy(REPO / "policies" / "default.yaml")
    assert {"hate", "offensive", "weapons"} <= set(policy.categories)
