"""Backtest: replay logged decisions through a new policy and report what changes.

Decisions (JSONL, one `Decision` per line, as on the decisions topic) carry
the classifier scores, so every rule on scores replays exactly. Captions,
languages and metadata are not in decisions: pass the posts (JSONL of `Post`,
joined by post_id) to replay term-list and post rules too. Author counters
and hash-bank matches are not logged; rules reading them see zero counters
and no matches, and the report names those rules. Each decision is replayed
at its record's timestamp, so rule expiry applies as it would have.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from moderator.policy.engine import CompiledPolicy, PolicyResult
from moderator.policy.inputs import PolicyInput
from moderator.schema.decision import Action, Decision
from moderator.schema.post import Post


@dataclass
class ChangedPost:
    post_id: str
    old_action: Action
    new_action: Action
    old_rules: list[str]
    new_rules: list[str]
    old_labels: list[str]
    new_labels: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "old_action": self.old_action.value,
            "new_action": self.new_action.value,
            "old_rules": self.old_rules,
            "new_rules": self.new_rules,
            "old_labels": self.old_labels,
            "new_labels": self.new_labels,
        }


@dataclass
class BacktestReport:
    policy: str
    decisions: int = 0
    skipped_lines: int = 0
    with_post: int = 0
    old_policies: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[Action, Action]] = field(default_factory=Counter)
    old_rule_hits: Counter[str] = field(default_factory=Counter)
    new_rule_hits: Counter[str] = field(default_factory=Counter)
    old_labels: Counter[str] = field(default_factory=Counter)
    new_labels: Counter[str] = field(default_factory=Counter)
    old_actions: Counter[Action] = field(default_factory=Counter)
    new_actions: Counter[Action] = field(default_factory=Counter)
    changed: list[ChangedPost] = field(default_factory=list)
    unreplayable_rules: dict[str, str] = field(default_factory=dict)
    """Rule id → which logged-out input it reads (replayed as zero / no match)."""

    @property
    def changed_count(self) -> int:
        return sum(n for (old, new), n in self.transitions.items() if old is not new)

    def rule_rows(self) -> list[tuple[str, int, int]]:
        """(rule, old hits, new hits) for every rule either side fired, by largest change."""
        rules = set(self.old_rule_hits) | set(self.new_rule_hits)
        rows = [(r, self.old_rule_hits[r], self.new_rule_hits[r]) for r in rules]
        return sorted(rows, key=lambda row: (-abs(row[2] - row[1]), row[0]))

    def label_rows(self) -> list[tuple[str, int, int]]:
        labels = set(self.old_labels) | set(self.new_labels)
        rows = [(label, self.old_labels[label], self.new_labels[label]) for label in labels]
        return sorted(rows, key=lambda row: (-abs(row[2] - row[1]), row[0]))


def read_jsonl(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def load_posts(path: Path) -> dict[str, Post]:
    posts = {}
    for _, line in read_jsonl(path):
        try:
            post = Post.model_validate_json(line)
        except ValidationError:
            continue
        posts[post.post_id] = post
    return posts


def backtest(
    policy: CompiledPolicy,
    decisions: Iterable[bytes],
    posts: dict[str, Post] | None = None,
    keep_changes: int = 1000,
) -> BacktestReport:
    report = BacktestReport(policy.qualified_version)
    for rule in policy.rules:
        if "author" in rule.reads:
            report.unreplayable_rules[rule.id] = "author counters"
        elif "banks" in rule.reads:
            report.unreplayable_rules[rule.id] = "hash-bank matches"
        elif "post" in rule.reads and not posts:
            report.unreplayable_rules[rule.id] = "post fields (pass --posts)"
    for line in decisions:
        try:
            decision = Decision.model_validate_json(line)
        except (ValidationError, ValueError):
            report.skipped_lines += 1
            continue
        post = posts.get(decision.post_id) if posts else None
        report.with_post += post is not None
        result = policy.decide(_input(decision, post))
        _tally(report, decision, result, keep_changes)
    return report


def _input(decision: Decision, post: Post | None) -> PolicyInput:
    now = decision.source.timestamp_ms / 1000.0
    # The logged problems replay as they were: the image is not re-read.
    problems = tuple(decision.problems)
    if post is None:
        return PolicyInput(
            scores=dict(decision.scores),
            post_id=decision.post_id,
            author_id=decision.author_id,
            now=now,
            problems=problems,
        )
    return PolicyInput.from_post(post, dict(decision.scores), now=now, problems=problems)


def _tally(
    report: BacktestReport, decision: Decision, result: PolicyResult, keep_changes: int
) -> None:
    report.decisions += 1
    report.old_policies[decision.policy_version] += 1
    report.transitions[(decision.action, result.action)] += 1
    report.old_actions[decision.action] += 1
    report.new_actions[result.action] += 1
    report.old_rule_hits.update(decision.rules_fired)
    report.new_rule_hits.update(result.rules_fired)
    report.old_rule_hits.update(f"{rule} (shadow)" for rule in decision.shadow_rules)
    report.new_rule_hits.update(f"{rule} (shadow)" for rule in result.shadow_rules)
    report.old_labels.update(decision.labels)
    report.new_labels.update(result.labels)
    if decision.action is not result.action and len(report.changed) < keep_changes:
        report.changed.append(
            ChangedPost(
                decision.post_id,
                decision.action,
                result.action,
                list(decision.rules_fired),
                list(result.rules_fired),
                list(decision.labels),
                list(result.labels),
            )
        )


def write_changes(report: BacktestReport, path: Path) -> None:
    with path.open("wb") as handle:
        for change in report.changed:
            handle.write(orjson.dumps(change.as_json()) + b"\n")
