"""Policy file → `CompiledPolicy`: validate, resolve resources, compile every rule.

All problems of a file are collected and reported together, one per line as
``file:line:column: field: message``; the column of an expression error is the
column in the file, not in the expression.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from moderator.policy.banks import HashBank, HashBanks, HashListError, load_bank
from moderator.policy.cel import CompileEnv, ExpressionCompiler, ExpressionError
from moderator.policy.document import PolicyDocument, RuleMode, RuleSpec
from moderator.policy.engine import CompiledPolicy, RuleInfo, build_evaluator
from moderator.policy.errors import PolicyError, PolicyProblem
from moderator.policy.terms import TermList, parse_term_file
from moderator.yamlfile import LocatedYaml, YamlFileError, load_located_yaml

logger = logging.getLogger(__name__)

Loc = Sequence[int | str]
M = TypeVar("M", bound=BaseModel)


def read_document(path: str | Path, model: type[M], what: str) -> tuple[M, LocatedYaml]:
    """A YAML mapping validated into `model`; errors name file:line:column and field."""
    file = Path(path)
    try:
        located = load_located_yaml(file)
    except YamlFileError as exc:
        raise PolicyError(str(exc)) from exc
    if not isinstance(located.data, dict):
        raise PolicyError(f"{file}:1:1: a {what} file must be a mapping")
    try:
        return model.model_validate(located.data), located
    except ValidationError as exc:
        problems = [problem(located, item["loc"], item["msg"]) for item in exc.errors()]
        raise PolicyError.from_problems(f"{file}: invalid {what}", problems) from exc


def load_policy(path: str | Path) -> CompiledPolicy:
    """Load, validate and compile a policy file; raises PolicyError naming file:line:column."""
    document, located = read_document(path, PolicyDocument, "policy")
    return compile_document(document, located)


def compile_document(document: PolicyDocument, located: LocatedYaml) -> CompiledPolicy:
    problems: list[PolicyProblem] = []
    base = located.path.parent
    categories = list(dict.fromkeys(document.categories))
    if len(categories) != len(document.categories):
        problems.append(problem(located, ("categories",), "a category is listed twice"))
    term_lists = _term_lists(document, located, base, problems)
    banks = _banks(document, located, base, problems)
    env = CompileEnv(categories, term_lists, banks, list(document.semantic_banks) or None)
    compiler = ExpressionCompiler(env)
    compiled: list[tuple[RuleSpec, int, str, bool, frozenset[str]]] = []
    first_seen: dict[str, int] = {}
    for index, rule in enumerate(document.rules):
        if rule.id in first_seen:
            earlier = located.line_of(("rules", first_seen[rule.id], "id"))
            problems.append(
                problem(
                    located,
                    ("rules", index, "id"),
                    f"duplicate rule id {rule.id!r} (first defined on line {earlier})",
                )
            )
            continue
        first_seen[rule.id] = index
        env.used.clear()
        try:
            code = compiler.compile_condition(rule.when)
        except ExpressionError as exc:
            problems.append(expression_problem(located, ("rules", index, "when"), exc))
            continue
        compiled.append((rule, index, code.src, code.fails, frozenset(env.used)))
    if problems:
        raise PolicyError.from_problems(
            f"{located.path}: {len(problems)} problem(s) in the policy", problems
        )
    return _assemble(document, located, categories, term_lists, banks, compiled, env)


def _assemble(
    document: PolicyDocument,
    located: LocatedYaml,
    categories: list[str],
    term_lists: dict[str, TermList],
    banks: dict[str, HashBank],
    compiled: list[tuple[RuleSpec, int, str, bool, frozenset[str]]],
    env: CompileEnv,
) -> CompiledPolicy:
    defaults = document.defaults
    infos: list[tuple[RuleInfo, int, str, bool]] = []
    for rule, index, src, fails, reads in compiled:
        info = RuleInfo(
            id=rule.id,
            action=rule.action,
            labels=tuple(dict.fromkeys(rule.labels)),
            priority=defaults.priority if rule.priority is None else rule.priority,
            mode=rule.mode or defaults.mode,
            when=rule.when,
            description=rule.description,
            expires_at=rule.expires_at(),
            line=located.line_of(("rules", index)),
            reads=reads,
            notice=rule.notice,
        )
        infos.append((info, index, src, fails))
    active = sorted(
        (item for item in infos if item[0].mode is not RuleMode.DISABLED),
        key=lambda item: (-item[0].priority, item[1]),
    )
    disabled = [item[0] for item in infos if item[0].mode is RuleMode.DISABLED]
    qualified = f"{document.name}@{document.version}"
    evaluator, python_source = build_evaluator(
        [(info, src, fails) for info, _, src, fails in active],
        env.namespace,
        f"<policy {qualified}>",
    )
    reads = frozenset().union(*(info.reads for info, *_ in active)) if active else frozenset()
    used_banks = {name: bank for name, bank in banks.items() if "banks" in reads}
    return CompiledPolicy(
        name=document.name,
        version=document.version,
        description=document.description,
        categories=categories,
        default_action=defaults.action,
        rules=[info for info, *_ in active],
        evaluator=evaluator,
        python_source=python_source,
        disabled=disabled,
        term_lists=term_lists,
        banks=HashBanks(used_banks),
        source=located.path,
        reads=reads,
        digest=_digest(located.path),
        dependencies=_dependencies(document, located.path.parent),
    )


def _dependencies(document: PolicyDocument, base: Path) -> list[Path]:
    files = [base / spec.file for spec in document.term_lists.values() if spec.file is not None]
    return files + [base / spec.file for spec in document.hash_banks.values()]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _term_lists(
    document: PolicyDocument, located: LocatedYaml, base: Path, problems: list[PolicyProblem]
) -> dict[str, TermList]:
    lists = {}
    for name, spec in document.term_lists.items():
        terms = list(spec.terms)
        if spec.file is not None:
            file = base / spec.file
            try:
                terms += parse_term_file(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(
                    problem(located, ("term_lists", name, "file"), f"cannot read {file}: {exc}")
                )
                continue
        lists[name] = TermList(name, terms)
    return lists


def _banks(
    document: PolicyDocument, located: LocatedYaml, base: Path, problems: list[PolicyProblem]
) -> dict[str, HashBank]:
    banks = {}
    for name, spec in document.hash_banks.items():
        try:
            banks[name] = load_bank(
                name, spec.kind, base / spec.file, spec.threshold, spec.quality_floor
            )
        except HashListError as exc:
            problems.append(problem(located, ("hash_banks", name, "file"), str(exc)))
    return banks


# -- locations -----------------------------------------------------------------------------------


def problem(located: LocatedYaml, loc: Loc, message: str) -> PolicyProblem:
    key, node = located.node_at(loc)
    mark_node = key or node
    field = ".".join(str(part) for part in loc) or "(top level)"
    if mark_node is None:
        return PolicyProblem(str(located.path), None, None, field, message)
    mark = mark_node.start_mark
    return PolicyProblem(str(located.path), mark.line + 1, mark.column + 1, field, message)


def expression_problem(located: LocatedYaml, loc: Loc, error: ExpressionError) -> PolicyProblem:
    field = ".".join(str(part) for part in loc)
    _, node = located.node_at(loc)
    if not isinstance(node, yaml.ScalarNode):
        return problem(located, loc, error.message)
    line, column = expression_position(node, error.line, error.column)
    return PolicyProblem(str(located.path), line, column, field, error.message)


def expression_position(node: yaml.ScalarNode, line: int, column: int) -> tuple[int, int]:
    """File line and column of a position inside a scalar's value, for any scalar style.

    Walks the scalar's source text and its parsed value side by side, skipping the
    whitespace that folding and indentation change and the quotes and block header.
    """
    start, end = node.start_mark, node.end_mark
    buffer = getattr(start, "buffer", None)
    if not buffer:
        return start.line + 1, start.column + 1
    raw = buffer[start.index : end.index]
    value: str = node.value
    lines = value.split("\n")
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    cursor = raw.index("\n") + 1 if node.style in ("|", ">") and "\n" in raw else 0
    if node.style in ('"', "'"):
        cursor = 1
    for char in value[: min(offset, len(value))]:
        if char.isspace():
            continue
        found = raw.find(char, cursor)
        if found < 0:
            break
        cursor = found + 1
    target = value[offset] if offset < len(value) else ""
    if target and not target.isspace():
        found = raw.find(target, cursor)
        cursor = found if found >= 0 else cursor
    else:
        while cursor < len(raw) and raw[cursor] in " \t":
            cursor += 1
    absolute = start.index + cursor
    file_line = buffer.count("\n", 0, absolute) + 1
    file_column = absolute - (buffer.rfind("\n", 0, absolute) + 1) + 1
    return file_line, file_column
