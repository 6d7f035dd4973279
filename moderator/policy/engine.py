"""A compiled policy: evaluate every rule for one input and combine the result.

Precedence: among the live rules that fired, the highest `priority` decides;
within that priority the most severe action wins (allow < label < review <
block) and the labels of those rules are the decision's labels. With every
rule at the default priority this is simply "the most severe action wins"; a
higher priority is for exceptions, such as an allow-list bank that must
override model scores. Shadow rules are evaluated and reported, never
enforced. Disabled rules and rules past their expiry do not run. A rule whose
expression raises a CEL error (a missing metadata key, division by zero) does
not fire; it is reported in `PolicyResult.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderator.policy.banks import HashBanks
from moderator.policy.cel import prologue
from moderator.policy.cel.exprcode import SEMANTIC_READ
from moderator.policy.document import RuleMode
from moderator.policy.errors import PolicyError
from moderator.policy.inputs import PolicyInput
from moderator.policy.terms import TermList
from moderator.schema.decision import Action

Evaluator = Callable[[PolicyInput, float], tuple[list[int], list[int], list[int] | None]]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    action: Action
    labels: list[str] = field(default_factory=list)
    rules_fired: list[str] = field(default_factory=list)
    """Live rules that fired, highest priority first."""
    shadow_rules: list[str] = field(default_factory=list)
    """Shadow rules that would have fired; never enforced."""
    policy_version: str = ""
    """``name@version`` of the policy that decided."""
    errors: list[str] = field(default_factory=list)
    """Rules whose expression raised a CEL error (they did not fire)."""
    image_text_changed: bool = False
    """The policy decided another action or labels than it would without the image text
    (PolicyService.decide_post; the model's scores are the same in both)."""
    explanations: Mapping[str, str] = field(default_factory=dict)
    """Rule id → description, for each live rule that fired (shared between results: copy it
    before changing it)."""
    notices: tuple[str, ...] = ()
    """The deciding rules' `notice:` texts, placeholders filled, without repeats."""


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    action: Action
    labels: tuple[str, ...]
    priority: int
    mode: RuleMode
    when: str
    description: str = ""
    expires_at: float | None = None
    line: int | None = None
    reads: frozenset[str] = frozenset()
    """Inputs the rule reads: 'scores', 'post', 'author', 'banks'."""
    notice: str | None = None
    """A str.format template over NOTICE_PLACEHOLDERS, checked at load."""

    @property
    def severity(self) -> int:
        return self.action.severity


@dataclass(frozen=True, slots=True)
class _Outcome:
    action: Action
    labels: tuple[str, ...]
    explanations: Mapping[str, str]
    notices: tuple[str, ...]


class CompiledPolicy:
    """A loaded policy: immutable, safe to share between threads."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        description: str,
        categories: Sequence[str],
        default_action: Action,
        rules: Sequence[RuleInfo],
        evaluator: Evaluator,
        python_source: str,
        disabled: Sequence[RuleInfo] = (),
        term_lists: Mapping[str, TermList] | None = None,
        banks: HashBanks | None = None,
        source: Path | None = None,
        reads: frozenset[str] = frozenset(),
        digest: str = "",
        dependencies: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.version = version
        self.description = description
        self.categories = tuple(categories)
        self.default_action = default_action
        self.rules = tuple(rules)
        """Evaluated rules (live and shadow), in evaluation order: priority, then file order."""
        self.disabled = tuple(disabled)
        self.term_lists = dict(term_lists or {})
        self.banks = banks or HashBanks({})
        self.source = source
        self.python_source = python_source
        self.reads = reads
        self.digest = digest
        """sha256 of the policy file's bytes."""
        self.dependencies = tuple(dependencies)
        """Term-list and bank files the policy read (watched for hot reload)."""
        self._evaluate = evaluator
        self._category_set = frozenset(self.categories)
        self._zero_scores = dict.fromkeys(self.categories, 0.0)
        self._needs_clock = any(rule.expires_at is not None for rule in self.rules)
        self._nothing = PolicyResult(self.default_action, policy_version=self.qualified_version)
        self._outcomes: dict[tuple[int, ...], _Outcome] = {}
        self._index = {rule.id: index for index, rule in enumerate(self.rules)}

    @property
    def qualified_version(self) -> str:
        """What decisions record: ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def reads_image_text(self) -> bool:
        """Some rule reads post.image_text or signals.ocr."""
        return "image_text" in self.reads

    @property
    def uses_author(self) -> bool:
        return "author" in self.reads

    def __repr__(self) -> str:
        return f"CompiledPolicy({self.qualified_version!r}, {len(self.rules)} rules)"

    def decide(
        self, data: PolicyInput | Mapping[str, float], now: float | None = None
    ) -> PolicyResult:
        """Evaluate every rule; `data` may be a bare mapping of scores."""
        if not isinstance(data, PolicyInput):
            data = PolicyInput(scores=data)
        if not self._category_set <= data.scores.keys():
            data.scores = {**self._zero_scores, **data.scores}
        if now is None:
            now = data.now if data.now is not None else (time.time() if self._needs_clock else 0.0)
        live, shadow, failed = self._evaluate(data, now)
        return self.result(live, shadow, failed)

    def result(self, live: list[int], shadow: list[int], failed: list[int] | None) -> PolicyResult:
        """Combine fired rule indices (into `rules`) into a result, by precedence."""
        if not live and not shadow and failed is None:
            return self._nothing
        rules = self.rules
        shadow_ids = [rules[i].id for i in shadow]
        errors = [rules[i].id for i in failed] if failed is not None else []
        if not live:
            return PolicyResult(
                self.default_action,
                shadow_rules=shadow_ids,
                policy_version=self.qualified_version,
                errors=errors,
            )
        outcome = self._outcome(live)
        return PolicyResult(
            outcome.action,
            list(outcome.labels),
            [rules[i].id for i in live],
            shadow_ids,
            self.qualified_version,
            errors,
            explanations=outcome.explanations,
            notices=outcome.notices,
        )

    def demote(self, result: PolicyResult, rule_ids: frozenset[str]) -> PolicyResult:
        """`result` as if the live rules `rule_ids` were shadow rules (flood quarantine):
        they move to `shadow_rules` and the rest of the live rules decide."""
        moved = [rule_id for rule_id in result.rules_fired if rule_id in rule_ids]
        if not moved:
            return result
        live = [self._index[r] for r in result.rules_fired if r not in rule_ids]
        shadow = [*result.shadow_rules, *moved]
        if not live:
            return PolicyResult(
                self.default_action,
                shadow_rules=shadow,
                policy_version=self.qualified_version,
                errors=result.errors,
            )
        outcome = self._outcome(live)
        return PolicyResult(
            outcome.action,
            list(outcome.labels),
            [self.rules[i].id for i in live],
            shadow,
            self.qualified_version,
            result.errors,
            explanations=outcome.explanations,
            notices=outcome.notices,
        )

    def _outcome(self, live: list[int]) -> _Outcome:
        """Action and labels of a set of fired live rules (memoised: few distinct sets occur)."""
        key = tuple(live)
        outcome = self._outcomes.get(key)
        if outcome is not None:
            return outcome
        rules = self.rules
        top = rules[live[0]].priority
        action = rules[live[0]].action
        labels: list[str] = []
        deciding: list[RuleInfo] = []
        for index in live:
            rule = rules[index]
            if rule.priority != top:
                break
            deciding.append(rule)
            if rule.action.severity > action.severity:
                action = rule.action
            labels.extend(label for label in rule.labels if label not in labels)
        explanations = {rules[i].id: rules[i].description for i in live if rules[i].description}
        notices = self._notices(deciding, action, labels)
        outcome = _Outcome(action, tuple(labels), explanations, notices)
        if len(self._outcomes) < 4096:
            self._outcomes[key] = outcome
        return outcome

    def _notices(
        self, deciding: list[RuleInfo], action: Action, labels: list[str]
    ) -> tuple[str, ...]:
        """The deciding rules' notices (only those: a rule outranked by a higher-priority
        exception did not decide, so its notice would tell the author something untrue)."""
        templates = [rule.notice for rule in deciding if rule.notice]
        if not templates:
            return ()
        values = {
            "action": action.value,
            "labels": ", ".join(labels),
            "categories": ", ".join(label for label in labels if label in self._category_set),
        }
        # The templates name only these keys, without attribute access (checked at load).
        return tuple(dict.fromkeys(template.format(**values) for template in templates))

    def check_categories(
        self, model_categories: Sequence[str], semantic_banks: Collection[str] | None = None
    ) -> None:
        """Raise PolicyError when the policy names categories the model does not score, or
        (given the banks the replica serves) reads a semantic bank the replica does not serve:
        its rules would read 0.0 for every post."""
        where = self.source or self.name
        unknown = sorted(self._category_set - set(model_categories))
        if unknown:
            raise PolicyError(
                f"{where}: the policy names categories the model does not score: {unknown}; "
                f"the model scores {list(model_categories)}"
            )
        if semantic_banks is None:
            return
        unserved = sorted(self.semantic_banks - set(semantic_banks))
        if unserved:
            raise PolicyError(
                f"{where}: rules read semantic banks the Classifier replica does not serve: "
                f"{unserved}; it serves {sorted(semantic_banks)} "
                "(serving.classifier.semantic.banks)"
            )

    @property
    def semantic_banks(self) -> frozenset[str]:
        """The semantic banks the rules read (`semantic_match("NAME")`)."""
        return frozenset(
            name.removeprefix(SEMANTIC_READ)
            for name in self.reads
            if name.startswith(SEMANTIC_READ)
        )

    def rule(self, rule_id: str) -> RuleInfo | None:
        for rule in (*self.rules, *self.disabled):
            if rule.id == rule_id:
                return rule
        return None

    def summary(self) -> dict[str, Any]:
        modes: dict[str, int] = {}
        for rule in (*self.rules, *self.disabled):
            modes[rule.mode.value] = modes.get(rule.mode.value, 0) + 1
        return {
            "policy": self.qualified_version,
            "categories": list(self.categories),
            "rules": modes,
            "term_lists": {name: terms.size for name, terms in self.term_lists.items()},
            "hash_banks": {name: bank.size for name, bank in self.banks.banks.items()},
        }


def build_evaluator(
    rules: Sequence[tuple[RuleInfo, str, bool]], namespace: dict[str, Any], filename: str
) -> tuple[Evaluator, str]:
    """Generate and compile one Python function that evaluates every rule.

    `rules` holds (rule, Python expression, may raise) in evaluation order. The
    function returns (live indices fired, shadow indices fired, failed indices or None).
    """
    body: list[str] = []
    for index, (rule, expression, fails) in enumerate(rules):
        condition = expression
        if rule.expires_at is not None:
            condition = f"now < {rule.expires_at!r} and {expression}"
        target = "live" if rule.mode is RuleMode.LIVE else "shadow"
        body.append(f"    # {rule.id}")
        if fails:
            body += [
                "    try:",
                f"        if {condition}:",
                f"            {target}.append({index})",
                "    except _ERRORS:",
                "        failed = [] if failed is None else failed",
                f"        failed.append({index})",
            ]
        else:
            body += [f"    if {condition}:", f"        {target}.append({index})"]
    text = "\n".join(body)
    source = "\n".join(
        [
            "def _evaluate(P, now):",
            *prologue(),
            "    live = []",
            "    shadow = []",
            "    failed = None",
            text,
            "    return live, shadow, failed",
            "",
        ]
    )
    code = compile(source, filename, "exec")
    exec(code, namespace)
    evaluator: Evaluator = namespace["_evaluate"]
    return evaluator, source
