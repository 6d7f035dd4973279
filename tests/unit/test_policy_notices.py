"""Rules' `notice:` texts and `description` explanations in decisions; notices checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from moderator.policy import PolicyError, load_policy
from moderator.policy.cli import policy_app
from moderator.schema import Action

POLICY = """\
name: notices
version: "1"
categories: [hate, violence]
rules:
  - id: hate.block
    description: Clear hate.
    when: scores.hate >= 0.9
    action: block
    labels: [hate]
    notice: "Your post was hidden because it was labelled {labels} ({categories})."
  - id: violence.label
    description: Violent imagery.
    when: scores.violence >= 0.5
    action: label
    labels: [violence, graphic]
    notice: "This post carries a {action}: {labels}."
  - id: caption.review
    when: post.caption.contains("review me")
    action: review
  - id: trusted.allow
    description: Trusted partner.
    when: post.metadata.trusted == true
    action: allow
    priority: 50
  - id: hate.shadow
    description: Candidate.
    when: scores.hate >= 0.5
    action: block
    mode: shadow
    notice: "never shown: {labels}"
"""


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "notices.yaml"
    path.write_text(POLICY)
    return path


def test_notices_are_filled_from_the_deciding_rules(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    both = policy.decide({"hate": 0.95, "violence": 0.7})
    assert both.action is Action.BLOCK
    assert both.notices == (
        "Your post was hidden because it was labelled hate, violence, graphic (hate, violence).",
        "This post carries a block: hate, violence, graphic.",
    )
    assert dict(both.explanations) == {
        "hate.block": "Clear hate.",
        "violence.label": "Violent imagery.",
    }
    assert both.shadow_rules == ["hate.shadow"]  # shadow rules' notices never show
    nothing = policy.decide({"hate": 0.1, "violence": 0.1})
    assert (nothing.notices, dict(nothing.explanations)) == ((), {})


def test_a_rule_without_description_or_notice_adds_neither(policy_file: Path) -> None:
    from moderator.policy.inputs import PolicyInput

    policy = load_policy(policy_file)
    result = policy.decide(PolicyInput(scores={"hate": 0.0}, caption="please review me"))
    assert result.rules_fired == ["caption.review"]
    assert (result.notices, dict(result.explanations)) == ((), {})


def test_an_outranked_rule_explains_but_does_not_notify(policy_file: Path) -> None:
    from moderator.policy.inputs import PolicyInput

    policy = load_policy(policy_file)
    data = PolicyInput(scores={"hate": 0.95}, metadata={"trusted": True})
    result = policy.decide(data)
    assert result.action is Action.ALLOW
    assert result.rules_fired == ["trusted.allow", "hate.block"]
    assert result.notices == ()  # hate.block did not decide: telling the author would be untrue
    assert set(result.explanations) == {"trusted.allow", "hate.block"}


def test_quarantine_demotion_recomputes_notices(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    result = policy.decide({"hate": 0.95, "violence": 0.7})
    demoted = policy.demote(result, frozenset({"hate.block"}))
    assert demoted.action is Action.LABEL
    assert demoted.rules_fired == ["violence.label"]
    assert demoted.shadow_rules == ["hate.shadow", "hate.block"]
    assert demoted.notices == ("This post carries a label: violence, graphic.",)
    assert policy.demote(result, frozenset({"other"})) is result


@pytest.mark.parametrize(
    ("notice", "message"),
    [
        ("Hidden for {reason}.", "unknown placeholder {reason}"),
        ("{labels.__class__}", "no attribute or index access"),
        ("{labels[0]}", "no attribute or index access"),
        ("{}", "unknown placeholder {}"),
        ("{labels!r}", "no format spec or conversion"),
        ("{labels:>99999}", "no format spec or conversion"),
        ("{labels", "not a valid template"),
    ],
)
def test_bad_notices_are_refused_at_load_with_file_line_and_field(
    tmp_path: Path, notice: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.replace("This post carries a {action}: {labels}.", notice))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    [problem] = caught.value.problems
    assert problem.field == "rules.1.notice"
    assert problem.line == 16  # the notice of violence.label
    assert message in problem.message
    assert f"{path}:16:5:" in str(caught.value)


def test_policy_check_reports_a_bad_notice_and_lists_noticed_rules(policy_file: Path) -> None:
    app = typer.Typer()
    app.add_typer(policy_app, name="policy")
    runner = CliRunner()
    result = runner.invoke(app, ["policy", "check", str(policy_file)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (
        "notices (placeholders checked): hate.block, violence.label, hate.shadow" in result.output
    )
    policy_file.write_text(POLICY.replace("{action}", "{verdict}"))
    result = runner.invoke(app, ["policy", "check", str(policy_file)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"{policy_file}:16:5:" in result.output and "rules.1.notice" in result.output
    assert "unknown placeholder {verdict}" in result.output
