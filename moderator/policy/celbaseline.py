"""The same rules evaluated by cel-python's own evaluator: the baseline and the oracle.

`moderator/benchmark/policy_bench.py` times it against the compiled engine, and the tests
check that both give the same values and decisions. Not used on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

from moderator.policy.cel import FUNCTIONS, CelpyResources
from moderator.policy.cel.context import AUTHOR_FIELDS
from moderator.policy.engine import CompiledPolicy, PolicyResult
from moderator.policy.inputs import EMPTY_SIGNALS, PolicyInput
from moderator.policy.terms import TermList

RunnerKind = Literal["interpreted", "compiled"]


def to_cel(value: Any) -> Any:
    """A plain Python value as cel-python types."""
    from celpy import celtypes

    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(v) for v in value])
    raise TypeError(f"no CEL type for {type(value).__name__}")


def from_cel(value: Any) -> Any:
    """cel-python values back to plain Python (bool before int: BoolType is an int)."""
    from celpy import celtypes

    if value is None:
        return None
    if isinstance(value, celtypes.BoolType | bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): from_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_cel(v) for v in value]
    return value


BOUND: dict[str, Callable[..., Any]] = {}
"""Extension functions by key, where cel-python's transpiled code can name them."""


def _transpilable(function: Callable[..., Any], owner: object, name: str) -> Callable[..., Any]:
    """cel-python's CompiledRunner emits ``module.qualname(...)`` for a bound function and
    executes it in celpy.evaluation's globals: give each closure a name it can resolve."""
    import importlib

    import celpy.evaluation

    key = f"{id(owner)}:{name}"
    BOUND[key] = function
    function.__module__ = __name__
    function.__qualname__ = f"BOUND[{key!r}]"
    celpy.evaluation.__dict__.setdefault("moderator", importlib.import_module("moderator"))
    return function


def activation(data: PolicyInput) -> dict[str, Any]:
    return {
        "scores": to_cel(dict(data.scores)),
        "post": to_cel(
            {
                "id": data.post_id,
                "caption": data.caption,
                "lang": data.lang,
                "has_image": data.has_image,
                "metadata": dict(data.metadata),
                "problems": list(data.problems),
                "image_unreadable": data.image_unreadable,
                "normalised_caption": data.normalised().text,
                "caption_obfuscated": data.normalised().obfuscated,
                "image_text": data.image_text,
            }
        ),
        "signals": to_cel(
            {
                name: {field: data.signal(name, field) for field in outputs}
                for name, outputs in EMPTY_SIGNALS.items()
            }
        ),
        "author": to_cel(
            {"id": data.author_id, **{f: getattr(data.author, f) for f in AUTHOR_FIELDS}}
        ),
    }


class CelpyExpressions:
    """Expressions compiled by cel-python, with this package's extra functions bound."""

    def __init__(
        self, term_lists: Mapping[str, TermList] | None = None, runner: RunnerKind = "interpreted"
    ) -> None:
        import celpy
        from celpy.celparser import CELParser

        runner_class = celpy.CompiledRunner if runner == "compiled" else celpy.InterpretedRunner
        self._runner = runner
        self._transpiler_parser = None
        if runner == "compiled":
            shared = CELParser.CEL_PARSER
            CELParser.CEL_PARSER = None
            try:
                self._env = celpy.Environment(runner_class=runner_class)
                self._transpiler_parser = CELParser.CEL_PARSER
            finally:
                CELParser.CEL_PARSER = shared
        else:
            self._env = celpy.Environment(runner_class=runner_class)
        self.resources = CelpyResources(term_lists or {})
        self._functions = {}
        for function in FUNCTIONS.values():
            implementation = function.celpy(self.resources)
            if implementation is not None:
                self._functions[function.name] = _transpilable(implementation, self, function.name)

    def program(self, text: str) -> Any:
        from celpy.celparser import CELParser

        if self._runner != "compiled":
            return self._env.program(self._env.compile(text), self._functions)
        # cel-python keeps one Lark parser per process, built with the first runner's tree
        # class; its transpiler needs its own tree class, so parse with a parser of its own.
        shared = CELParser.CEL_PARSER
        CELParser.CEL_PARSER = self._transpiler_parser
        try:
            return self._env.program(self._env.compile(text), self._functions)
        finally:
            CELParser.CEL_PARSER = shared

    def evaluate(
        self, program: Any, data: PolicyInput, context: dict[str, Any] | None = None
    ) -> Any:
        """The value (cel-python types); raises celpy's CELEvalError for a CEL error."""
        self.resources.hash_matches = data.hash_matches
        self.resources.semantic_matches = data.semantic_matches()
        return program.evaluate(context if context is not None else activation(data))


def evaluate_expression(
    text: str, data: PolicyInput, term_lists: Mapping[str, TermList] | None = None
) -> Any:
    """One expression through cel-python's interpreter, as plain Python (raises on error)."""
    expressions = CelpyExpressions(term_lists)
    return from_cel(expressions.evaluate(expressions.program(text), data))


class CelpyPolicy:
    """A compiled policy's rules, evaluated by cel-python instead of generated code."""

    def __init__(self, policy: CompiledPolicy, runner: RunnerKind = "interpreted") -> None:
        from celpy.evaluation import CELEvalError

        self.policy = policy
        self._expressions = CelpyExpressions(policy.term_lists, runner)
        self._programs = [self._expressions.program(rule.when) for rule in policy.rules]
        self._errors: tuple[type[Exception], ...] = (CELEvalError, TypeError, ValueError)

    def decide(self, data: PolicyInput, now: float = 0.0) -> PolicyResult:
        scores = data.scores
        missing: Collection[str] = [c for c in self.policy.categories if c not in scores]
        if missing:
            data.scores = {**dict.fromkeys(missing, 0.0), **scores}
        context = activation(data)
        live: list[int] = []
        shadow: list[int] = []
        failed: list[int] | None = None
        for index, (rule, program) in enumerate(
            zip(self.policy.rules, self._programs, strict=True)
        ):
            if rule.expires_at is not None and now >= rule.expires_at:
                continue
            try:
                fired = bool(self._expressions.evaluate(program, data, context))
            except self._errors:
                failed = [*(failed or []), index]
                continue
            if fired:
                (live if rule.mode.value == "live" else shadow).append(index)
        return self.policy.result(live, shadow, failed)
