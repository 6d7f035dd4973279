"""`moderator policy check|test|backtest` and `moderator bank import`."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import typer
from PIL import Image
from typer.testing import CliRunner

from moderator.policy.backtest import backtest
from moderator.policy.cli import bank_app, policy_app
from moderator.policy.loader import load_policy
from moderator.schema import Action, Decision, SourceRef
from tests.unit.test_policy_banks import pattern_image

POLICIES = Path(__file__).resolve().parents[2] / "policies"
app = typer.Typer()
app.add_typer(policy_app, name="policy")
app.add_typer(bank_app, name="bank")
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_check_prints_a_rule_summary() -> None:
    code, output = run("policy", "check", POLICIES / "default.yaml")
    assert code == 0, output
    assert "ok default@4" in output
    assert "hate.block" in output and "shadow" in output and "disabled" in output


def test_check_reports_located_errors_and_model_categories(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\nversion: '1'\ncategories: [hate]\nrules:\n"
        "  - {id: a, when: 'scores.nope > 0.5', action: block}\n"
    )
    code, output = run("policy", "check", bad)
    assert code == 2
    assert "bad.yaml:5:" in output and "unknown category 'nope'" in output
    code, output = run("policy", "check", POLICIES / "default.yaml", "--categories", "hate")
    assert code == 2 and "does not score" in output


def test_test_command_runs_the_shipped_cases() -> None:
    code, output = run("policy", "test", POLICIES / "default.yaml", POLICIES / "default.cases.yaml")
    assert code == 0, output
    assert "0 failed" in output


def test_test_command_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text(
        "cases:\n  - {name: x, input: {scores: {hate: 0.95}}, expect: {action: allow}}\n"
    )
    code, output = run("policy", "test", POLICIES / "default.yaml", cases)
    assert code == 1
    assert "FAIL x" in output and "expected allow, got block" in output


def _decision(
    post_id: str,
    scores: dict[str, float],
    action: Action,
    rules: list[str],
    problems: tuple[str, ...] = (),
) -> bytes:
    decision = Decision(
        post_id=post_id,
        author_id="a",
        action=action,
        labels=[],
        scores=scores,
        rules_fired=rules,
        problems=list(problems),
        policy_version="default@1",
        model_version="m",
        source=SourceRef(topic="t", partition=0, offset=1, timestamp_ms=1_780_000_000_000),
    )
    return orjson.dumps(decision.model_dump(mode="json"))


def test_backtest_replays_the_logged_problems() -> None:
    # Decided before the problem rules existed: replaying shows what they would change.
    lines = [
        _decision("img", {"hate": 0.1}, Action.ALLOW, [], ("image_corrupt",)),
        _decision("conflict", {}, Action.ALLOW, [], ("image_source_conflict",)),
        _decision("clean", {}, Action.ALLOW, []),
    ]
    report = backtest(load_policy(POLICIES / "default.yaml"), lines)
    assert {c.post_id for c in report.changed} == {"img", "conflict"}
    rows = {rule: new for rule, _, new in report.rule_rows()}
    assert rows["problems.unreadable_image"] == 1  # the readable inline image is not
    assert rows["problems.malformed_record"] == 1


def test_backtest_diffs_actions_by_rule_and_label(tmp_path: Path) -> None:
    lines = [
        _decision("same", {"hate": 0.95}, Action.BLOCK, ["hate.block"]),
        _decision("up", {"hate": 0.65}, Action.LABEL, ["hate.label"]),
        _decision("down", {"swimwear": 0.2}, Action.LABEL, ["swimwear.label"]),
    ]
    report = backtest(load_policy(POLICIES / "default.yaml"), [*lines, b"not json"])
    assert report.decisions == 3 and report.skipped_lines == 1
    assert report.transitions[(Action.LABEL, Action.REVIEW)] == 1
    assert report.transitions[(Action.LABEL, Action.ALLOW)] == 1
    assert {c.post_id for c in report.changed} == {"up", "down"}
    rows = {rule: (old, new) for rule, old, new in report.rule_rows()}
    assert rows["swimwear.label"] == (1, 0)
    assert rows["hate.review"] == (0, 2)
    assert "author.flood" in report.unreplayable_rules

    decisions = tmp_path / "decisions.jsonl"
    decisions.write_bytes(b"\n".join(lines) + b"\n")
    changes = tmp_path / "changes.jsonl"
    code, output = run(
        "policy",
        "backtest",
        POLICIES / "default.yaml",
        "--decisions",
        decisions,
        "--changes",
        changes,
    )
    assert code == 0, output
    assert "2 change action" in output and "hate.review" in output
    assert len(changes.read_text().splitlines()) == 2


def test_bank_import_hashes_images_and_merges_lists(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for seed in (1, 2):
        buffer = io.BytesIO()
        Image.fromarray(pattern_image(seed)).save(buffer, format="PNG")
        (images / f"{seed}.png").write_bytes(buffer.getvalue())
    existing = tmp_path / "te.csv"
    existing.write_text("hash,id\n" + "f" * 64 + ",te-1\n")
    out = tmp_path / "bank.pdq.txt"
    code, output = run("bank", "import", images, existing, "--kind", "pdq", "--out", out)
    assert code == 0, output
    assert "wrote 3 pdq hashes" in output
    shipped = (POLICIES / "banks" / "known_bad.pdq.txt").read_text()
    for line in out.read_text().splitlines():
        if line.endswith(".png"):
            assert line.split(",")[0] in shipped


def test_check_never_cuts_rule_ids_off_a_terminal(tmp_path: Path, monkeypatch) -> None:
    from rich.console import Console

    from moderator.policy import cli

    monkeypatch.setattr(cli, "console", Console(width=40))  # captured output, not a terminal
    rule_id = "bank.known_bad_images_from_the_partner_exchange.block"
    policy = tmp_path / "long.yaml"
    policy.write_text(
        "name: long\nversion: '1'\ncategories: [hate]\nrules:\n"
        f"  - {{id: {rule_id}, when: 'scores.hate > 0.5', action: block, labels: [hate]}}\n"
    )
    code, output = run("policy", "check", policy)
    assert code == 0, output
    assert rule_id in output
    assert "…" not in output
