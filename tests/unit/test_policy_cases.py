"""Every shipped policy has test cases; they pass, and together they fire every rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderator.policy.cases import load_cases, policy_path_for, run_cases
from moderator.policy.errors import PolicyError
from moderator.policy.loader import load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SHIPPED = sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith(".cases.yaml"))


@pytest.mark.parametrize("policy_path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_policy_cases_pass_and_cover_every_rule(policy_path: Path) -> None:
    cases_path = policy_path.with_name(policy_path.stem + ".cases.yaml")
    assert cases_path.exists(), f"{policy_path.name} ships without {cases_path.name}"
    document = load_cases(cases_path)
    assert policy_path_for(cases_path, document) == policy_path
    report = run_cases(load_policy(policy_path), document)
    failures = {o.case.name: o.failures for o in report.failed}
    assert not failures
    assert not report.never_fired, f"rules no case fires: {report.never_fired}"


def test_failing_cases_say_what_differs(tmp_path: Path) -> None:
    policy = load_policy(POLICIES / "default.yaml")
    (tmp_path / "c.yaml").write_text(
        "cases:\n"
        "  - name: wrong\n"
        "    input: {scores: {hate: 0.9, nope: 1.0}}\n"
        "    expect: {action: allow, labels: [x], rules_include: [missing.rule]}\n"
    )
    (outcome,) = run_cases(policy, load_cases(tmp_path / "c.yaml")).outcomes
    assert not outcome.passed
    text = "\n".join(outcome.failures)
    assert "categories the policy lacks: ['nope']" in text
    assert "action: expected allow, got block" in text
    assert "labels: expected ['x'], got ['hate']" in text
    assert "missing.rule" in text


def test_invalid_cases_files_are_located(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("cases:\n  - name: x\n    expect: {action: maybe}\n")
    with pytest.raises(PolicyError, match=r"c.yaml:3:14: cases.0.expect.action"):
        load_cases(tmp_path / "c.yaml")
