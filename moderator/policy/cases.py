"""Policy test cases: YAML inputs with the action and labels a policy must produce.

```yaml
policy: default.yaml          # optional: the policy these cases are for (relative path)
now: 2026-06-01T00:00:00Z     # optional: evaluation time (rule expiry) for every case
cases:
  - name: clear hate is blocked
    input:
      scores: {hate: 0.95}    # categories left out score 0.0
      post: {caption: "...", lang: en, has_image: true, metadata: {source: api},
             problems: [image_corrupt]}   # an image problem -> post.image_unreadable
      author: {strikes: 2, posts_last_hour: 3}
      banks: {known_bad_pdq: 4}   # bank name -> distance of the match
    expect:
      action: block
      labels: [hate]          # optional: exactly these labels, in any order
      rules_include: [hate.block]   # optional: these live rules fired
      rules_exclude: [hate.label]   # optional: these did not
      shadow_rules: []        # optional: exactly these shadow rules fired
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moderator.policy.engine import CompiledPolicy, PolicyResult
from moderator.policy.inputs import AuthorCounters, PolicyInput
from moderator.policy.loader import read_document
from moderator.schema.decision import Action


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CasePost(_Strict):
    id: str = "case-post"
    caption: str = ""
    image_text: str = ""
    lang: str = ""
    has_image: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


class CaseAuthor(_Strict):
    id: str = "case-author"
    posts_last_hour: int = 0
    posts_last_day: int = 0
    blocks_last_day: int = 0
    strikes: int = 0


class CaseInput(_Strict):
    scores: dict[str, float] = Field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="signal name → outputs (signals.<name>.<field>)"
    )
    post: CasePost = Field(default_factory=CasePost)
    author: CaseAuthor = Field(default_factory=CaseAuthor)
    banks: dict[str, int] = Field(default_factory=dict)
    now: datetime | None = None


class CaseExpect(_Strict):
    action: Action
    labels: list[str] | None = None
    rules_include: list[str] = Field(default_factory=list)
    rules_exclude: list[str] = Field(default_factory=list)
    shadow_rules: list[str] | None = None


class PolicyCase(_Strict):
    name: str = Field(min_length=1)
    input: CaseInput = Field(default_factory=CaseInput)
    expect: CaseExpect


class CasesDocument(_Strict):
    policy: str | None = None
    now: datetime | None = None
    cases: list[PolicyCase] = Field(min_length=1)


@dataclass
class CaseOutcome:
    case: PolicyCase
    result: PolicyResult
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class CasesReport:
    outcomes: list[CaseOutcome] = field(default_factory=list)
    never_fired: list[str] = field(default_factory=list)
    """Live and shadow rules no case made fire."""

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if not o.passed]


def load_cases(path: str | Path) -> CasesDocument:
    document, _ = read_document(path, CasesDocument, "cases")
    return document


def policy_path_for(cases_path: Path, document: CasesDocument) -> Path | None:
    return cases_path.parent / document.policy if document.policy else None


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def case_input(case: PolicyCase, default_now: float | None) -> PolicyInput:
    given = case.input
    now = _epoch(given.now) or default_now
    return PolicyInput(
        scores=dict(given.scores),
        post_id=given.post.id,
        author_id=given.author.id,
        caption=given.post.caption,
        image_text=given.post.image_text,
        signals={name: dict(outputs) for name, outputs in given.signals.items()},
        lang=given.post.lang,
        has_image=given.post.has_image,
        metadata=dict(given.post.metadata),
        problems=tuple(given.post.problems),
        author=AuthorCounters(
            posts_last_hour=given.author.posts_last_hour,
            posts_last_day=given.author.posts_last_day,
            blocks_last_day=given.author.blocks_last_day,
            strikes=given.author.strikes,
        ),
        hash_matches=dict(given.banks),
        now=now,
    )


def run_cases(policy: CompiledPolicy, document: CasesDocument) -> CasesReport:
    report = CasesReport()
    fired: set[str] = set()
    default_now = _epoch(document.now)
    for case in document.cases:
        unknown = sorted(set(case.input.scores) - set(policy.categories))
        unknown_banks = sorted(set(case.input.banks) - set(policy.banks.banks))
        result = policy.decide(case_input(case, default_now))
        fired.update(result.rules_fired, result.shadow_rules)
        failures = _compare(case.expect, result)
        if unknown:
            failures.insert(0, f"scores name categories the policy lacks: {unknown}")
        if unknown_banks:
            failures.insert(0, f"banks the policy lacks: {unknown_banks}")
        report.outcomes.append(CaseOutcome(case, result, failures))
    report.never_fired = [rule.id for rule in policy.rules if rule.id not in fired]
    return report


def _compare(expect: CaseExpect, result: PolicyResult) -> list[str]:
    failures = []
    if result.action is not expect.action:
        failures.append(f"action: expected {expect.action.value}, got {result.action.value}")
    if expect.labels is not None and sorted(expect.labels) != sorted(result.labels):
        failures.append(f"labels: expected {sorted(expect.labels)}, got {sorted(result.labels)}")
    missing = [rule for rule in expect.rules_include if rule not in result.rules_fired]
    if missing:
        failures.append(f"rules that should have fired did not: {missing}")
    extra = [rule for rule in expect.rules_exclude if rule in result.rules_fired]
    if extra:
        failures.append(f"rules that should not have fired did: {extra}")
    if expect.shadow_rules is not None and sorted(expect.shadow_rules) != sorted(
        result.shadow_rules
    ):
        expected, got = sorted(expect.shadow_rules), sorted(result.shadow_rules)
        failures.append(f"shadow rules: expected {expected}, got {got}")
    return failures
