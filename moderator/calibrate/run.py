"""One calibration: join, curves per category, thresholds rewritten, the new policy backtested."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from moderator.calibrate.curves import CategoryCurve, Point, category_curve
from moderator.calibrate.join import CalibrationError, JoinedSet, Progress, load_joined
from moderator.calibrate.thresholds import (
    Edit,
    ThresholdRule,
    find_threshold_rules,
    format_threshold,
    order_warnings,
    rewrite_policy,
    rules_to_tune,
    unified_diff,
)
from moderator.policy.backtest import BacktestReport, backtest, read_jsonl
from moderator.policy.document import PolicyDocument
from moderator.policy.errors import PolicyError
from moderator.schema.decision import Action
from moderator.yamlfile import LocatedYaml


@dataclass(frozen=True)
class CalibrationOptions:
    verdicts: Path
    decisions: Path
    policy: Path
    target_precision: float = 0.9
    min_support: int = 30
    """No recommendation rests on fewer reviewed posts at or above the threshold."""
    categories: tuple[str, ...] = ()
    """Empty: every policy category the decisions score."""
    action: Action | None = None
    """Tune the thresholds of rules with this action; None: each category's most severe."""
    resolution: float = 0.01
    policy_out: Path | None = None
    """Where the new policy goes; None: beside the policy, as <stem>.calibrated.yaml."""
    new_version: str | None = None
    """The new policy's version; None: '<version>-calibrated'."""
    backtest: bool = True


@dataclass
class CategoryResult:
    curve: CategoryCurve
    tuned: list[ThresholdRule]
    current: dict[str, Point]
    """Rule id → figures at the rule's threshold today."""
    new_value: str | None
    also_reads: list[str]
    """Other live rules that read this score inside a larger expression (not rewritten)."""
    notes: list[str] = field(default_factory=list)
    relative_files_note: str = ""
    kept: list[str] = field(default_factory=list)
    """Tuned rules left as they are: their threshold selects the same reviewed posts."""


@dataclass
class CalibrationResult:
    options: CalibrationOptions
    policy_name: str
    policy_version: str
    joined: JoinedSet
    categories: list[CategoryResult]
    unscored_categories: list[str]
    edits: list[Edit] = field(default_factory=list)
    new_policy: Path | None = None
    diff: str = ""
    baseline: BacktestReport | None = None
    """The unchanged policy replayed over the logged decisions (what the edits are compared to)."""
    calibrated: BacktestReport | None = None
    notes: list[str] = field(default_factory=list)
    relative_files_note: str = ""


def calibrate(options: CalibrationOptions, progress: Progress | None = None) -> CalibrationResult:
    from moderator.policy.loader import read_document

    if not 0 < options.target_precision <= 1:
        raise CalibrationError(
            f"--target-precision must be in (0, 1], not {options.target_precision}"
        )
    if options.min_support < 1:
        raise CalibrationError(f"--min-support must be at least 1, not {options.min_support}")
    try:
        document, located = read_document(options.policy, PolicyDocument, "policy")
    except PolicyError as exc:
        raise CalibrationError(str(exc)) from exc
    joined = load_joined(options.verdicts, options.decisions, progress)
    categories, unscored = _categories(options, document, joined)
    rules, others = find_threshold_rules(document, located)
    results = [_category(options, category, joined, rules, others) for category in categories]
    result = CalibrationResult(options, document.name, document.version, joined, results, unscored)
    models = sorted({decision.model_version for decision, _ in joined.pairs})
    if len(models) > 1:
        # Scores of different models are not on one scale: one threshold cannot suit them all.
        result.notes.append(
            f"reviewed decisions come from {len(models)} model versions "
            f"({', '.join(models)}): pass the decisions of one model"
        )
    new_values = {
        rule.index: item.new_value
        for item in results
        if item.new_value is not None
        for rule in item.tuned
        if rule.rule_id not in item.kept
    }
    if not new_values:
        return result
    out = options.policy_out or options.policy.with_name(
        f"{options.policy.stem}.calibrated{options.policy.suffix}"
    )
    version = options.new_version or f"{document.version}-calibrated"
    text, result.edits = rewrite_policy(options.policy, new_values, version)
    result.diff = unified_diff(options.policy, text, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    result.new_policy = out
    if out.parent.resolve() != options.policy.parent.resolve() and _relative_files(document):
        result.relative_files_note = (
            f"{out} names term lists and hash banks by paths relative to its folder: copy them "
            f"there from {options.policy.parent}, or write the policy beside the original"
        )
    if options.backtest:
        result.baseline = _backtest(options.policy, options.decisions)
        # Compiled as if beside the original, so its relative files resolve wherever it went.
        result.calibrated = _backtest(options.policy.with_name(out.name), options.decisions, text)
    return result


def _relative_files(document: PolicyDocument) -> bool:
    files = [spec.file for spec in document.term_lists.values() if spec.file is not None]
    files += [spec.file for spec in document.hash_banks.values()]
    return any(not Path(file).is_absolute() for file in files)


def _categories(
    options: CalibrationOptions, document: PolicyDocument, joined: JoinedSet
) -> tuple[list[str], list[str]]:
    known = list(document.categories)
    for category in options.categories:
        if category not in known:
            raise CalibrationError(
                f"category {category!r} is not in {options.policy}'s categories: {', '.join(known)}"
            )
        if category not in joined.scored_categories:
            raise CalibrationError(
                f"category {category!r}: no decision in {options.decisions} scores it"
            )
    if options.categories:
        return list(dict.fromkeys(options.categories)), []
    scored = [c for c in known if c in joined.scored_categories]
    if not scored:
        raise CalibrationError(
            f"no decision in {options.decisions} scores any of the policy's categories "
            f"({', '.join(known)})"
        )
    return scored, [c for c in known if c not in joined.scored_categories]


def _category(
    options: CalibrationOptions,
    category: str,
    joined: JoinedSet,
    rules: list[ThresholdRule],
    others: dict[str, list[str]],
) -> CategoryResult:
    curve = category_curve(
        joined.pairs, category, options.target_precision, options.min_support, options.resolution
    )
    tuned = rules_to_tune(rules, category, options.action)
    current = {rule.rule_id: curve.at(rule.value) for rule in tuned}
    point = curve.recommendation.point
    new_value = format_threshold(point.threshold, options.resolution) if point else None
    result = CategoryResult(curve, tuned, current, new_value, others.get(category, []))
    if not tuned:
        wanted = f"{options.action.value} " if options.action else ""
        result.notes.append(f"no live {wanted}threshold rule reads scores.{category} alone")
    elif point is not None:
        for rule in tuned:
            now = current[rule.rule_id]
            if (now.support, now.true_positives) == (point.support, point.true_positives):
                # The same reviewed posts either way: the data gives no reason to move it.
                result.kept.append(rule.rule_id)
                if format_threshold(rule.value, options.resolution) != new_value:
                    result.notes.append(
                        f"{rule.rule_id} kept at {rule.value:g}: it selects the same reviewed "
                        f"posts as {new_value}"
                    )
        result.notes += order_warnings(rules, tuned, point.threshold)
    return result


def _located_text(path: Path, text: str) -> LocatedYaml:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return LocatedYaml(path=path, data=data, root=root)


def _backtest(policy_path: Path, decisions: Path, text: str | None = None) -> BacktestReport:
    """Replay the logged decisions through the policy at `policy_path` (or `text`, read as if
    it were that file)."""
    from moderator.policy.loader import compile_document, load_policy

    try:
        if text is None:
            policy = load_policy(policy_path)
        else:
            located = _located_text(policy_path, text)
            document = PolicyDocument.model_validate(located.data)
            policy = compile_document(document, located)
    except (PolicyError, ValidationError, yaml.YAMLError) as exc:
        raise CalibrationError(f"the calibrated policy does not load: {exc}") from exc
    return backtest(policy, (line for _, line in read_jsonl(decisions)), keep_changes=1000)
