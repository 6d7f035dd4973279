"""Threshold rules of a policy, and a copy of the policy's YAML text with new thresholds.

A threshold rule is a live rule whose whole `when` is one comparison of a category's score
with a number: `scores.hate >= 0.85` (or `scores["hate"] >= 0.85`, or `>`). Rules that read a
score inside a larger expression (`scores.offensive >= 0.6 && scores.hate >= 0.3`) are not
rewritten; they are listed so that the person calibrating can look at them. The rewrite
replaces only the number's characters in the file, found through the YAML node of the rule's
`when` (moderator.yamlfile), so comments, order, quoting and layout stay as they were.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from moderator.calibrate.join import CalibrationError
from moderator.policy.document import PolicyDocument, RuleMode
from moderator.schema.decision import Action
from moderator.yamlfile import LocatedYaml, YamlFileError, load_located_yaml

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SCORE = rf"scores\s*(?:\.\s*(?P<dot>{_NAME})|\[\s*(?P<quote>[\"'])(?P<key>[^\"']+)(?P=quote)\s*\])"
_NUMBER = r"(?P<value>\d+(?:\.\d*)?|\.\d+)"
_COMPARISON = rf"{_SCORE}\s*(?P<op>>=|>)\s*{_NUMBER}"
SIMPLE_THRESHOLD = re.compile(rf"^\s*{_COMPARISON}\s*$")
# In the file's text: the number after the operator (the score side may be escaped in a
# double-quoted scalar; a threshold rule has exactly one comparison).
LITERAL = re.compile(rf"(?:>=|>)\s*{_NUMBER}")
SCORE_READ = re.compile(_SCORE)


@dataclass(frozen=True)
class ThresholdRule:
    rule_id: str
    index: int
    """Position in the policy's `rules` list."""
    category: str
    operator: str
    value: float
    action: Action
    line: int | None


@dataclass(frozen=True)
class Edit:
    rule_id: str
    line: int
    old: str
    new: str


def _category(match: re.Match[str]) -> str:
    return match.group("dot") or match.group("key")


def find_threshold_rules(
    document: PolicyDocument, located: LocatedYaml
) -> tuple[list[ThresholdRule], dict[str, list[str]]]:
    """(live threshold rules, category → ids of the other live rules that read its score)."""
    rules: list[ThresholdRule] = []
    others: dict[str, list[str]] = {}
    for index, rule in enumerate(document.rules):
        if (rule.mode or document.defaults.mode) is not RuleMode.LIVE:
            continue
        simple = SIMPLE_THRESHOLD.match(rule.when)
        if simple is not None:
            rules.append(
                ThresholdRule(
                    rule.id,
                    index,
                    _category(simple),
                    simple.group("op"),
                    float(simple.group("value")),
                    rule.action,
                    located.line_of(("rules", index, "when")),
                )
            )
            continue
        for category in dict.fromkeys(_category(m) for m in SCORE_READ.finditer(rule.when)):
            others.setdefault(category, []).append(rule.id)
    return rules, others


def rules_to_tune(
    rules: Sequence[ThresholdRule], category: str, action: Action | None
) -> list[ThresholdRule]:
    """The category's threshold rules of `action`; None → its most severe action's rules."""
    mine = [rule for rule in rules if rule.category == category]
    if not mine:
        return []
    chosen = action or max((rule.action for rule in mine), key=lambda a: a.severity)
    return [rule for rule in mine if rule.action is chosen]


def order_warnings(
    rules: Sequence[ThresholdRule], tuned: Sequence[ThresholdRule], new_value: float
) -> list[str]:
    """A more severe action's threshold moved below a milder one's: the milder rule then never
    decides a post on its own between them."""
    notes = []
    for rule in tuned:
        for other in rules:
            if (
                other.category == rule.category
                and other.action.severity < rule.action.severity
                and other.value > new_value
            ):
                notes.append(
                    f"{rule.rule_id} ({rule.action.value}) at {new_value:g} is below "
                    f"{other.rule_id} ({other.action.value}) at {other.value:g}"
                )
    return notes


def format_threshold(value: float, resolution: float) -> str:
    decimals = max(2, len(f"{resolution:g}".partition(".")[2]))
    return f"{value:.{decimals}f}"


def rewrite_policy(
    path: Path, new_values: Mapping[int, str], new_version: str | None = None
) -> tuple[str, list[Edit]]:
    """The policy file's text with rule `index`'s threshold literal replaced by
    `new_values[index]` (and the version replaced, when given); everything else unchanged."""
    try:
        text = path.read_text(encoding="utf-8")
        located = load_located_yaml(path)
    except (OSError, YamlFileError) as exc:
        raise CalibrationError(f"{path}: cannot read the policy: {exc}") from exc
    spans: list[tuple[int, int, str, Edit]] = []
    for index, new in new_values.items():
        _, node = located.node_at(("rules", index, "when"))
        if not isinstance(node, yaml.ScalarNode):
            raise CalibrationError(f"{path}: rules[{index}].when is not a scalar")
        start = node.start_mark.index
        raw = text[start : node.end_mark.index]
        found = list(LITERAL.finditer(raw))
        if len(found) != 1:
            raise CalibrationError(
                f"{path}:{node.start_mark.line + 1}: expected one score comparison in "
                f"rules[{index}].when, found {len(found)}"
            )
        number = found[0].span("value")
        rule_id = _rule_id(located, index)
        line = text.count("\n", 0, start + number[0]) + 1
        edit = Edit(rule_id, line, found[0].group("value"), new)
        spans.append((start + number[0], start + number[1], new, edit))
    if new_version is not None:
        _, node = located.node_at(("version",))
        if not isinstance(node, yaml.ScalarNode):
            raise CalibrationError(f"{path}: the policy has no version to replace")
        quoted = json.dumps(new_version)
        line = node.start_mark.line + 1
        begin, end = node.start_mark.index, node.end_mark.index
        spans.append((begin, end, quoted, Edit("version", line, text[begin:end], quoted)))
    for begin, end, new, _ in sorted(spans, key=lambda span: span[0], reverse=True):
        text = text[:begin] + new + text[end:]
    edits = sorted((edit for *_, edit in spans), key=lambda edit: edit.line)
    return text, edits


def _rule_id(located: LocatedYaml, index: int) -> str:
    _, node = located.node_at(("rules", index, "id"))
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"rules[{index}]"


def unified_diff(old_path: Path, new_text: str, new_path: Path) -> str:
    old_text = old_path.read_text(encoding="utf-8")
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=str(old_path),
            tofile=str(new_path),
        )
    )
