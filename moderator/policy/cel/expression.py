"""One CEL expression compiled on its own: for tools, tests and the function contract."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from moderator.policy.cel.compiler import CompileEnv, ExpressionCompiler
from moderator.policy.cel.context import prologue
from moderator.policy.cel.exprcode import TermSource
from moderator.policy.cel.typesystem import CelType


class CompiledExpression:
    """`evaluate(input)` returns the value or raises one of `runtime.EVAL_ERRORS`."""

    def __init__(
        self,
        text: str,
        categories: Collection[str],
        term_lists: Mapping[str, TermSource] | None = None,
        banks: Collection[str] = (),
    ) -> None:
        env = CompileEnv(categories, term_lists, banks)
        code = ExpressionCompiler(env).compile_value(text)
        self.text = text
        self.type: CelType = code.type
        self.python_source = "\n".join(
            ["def _expression(P):", *prologue(), f"    return {code.src}", ""]
        )
        exec(compile(self.python_source, "<expression>", "exec"), env.namespace)
        self._function: Callable[[Any], Any] = env.namespace["_expression"]

    def evaluate(self, data: Any) -> Any:
        """`data` is a `moderator.policy.PolicyInput`."""
        return self._function(data)
