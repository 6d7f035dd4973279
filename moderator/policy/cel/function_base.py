"""The contract of a built-in function: `PolicyFunction`, its examples, argument helpers.

Each function type-checks a call and emits Python for it at load, and names
the cel-python implementation the baseline evaluator uses (None = cel-python's
own built-in). Every function carries examples that
`tests/unit/test_policy_functions.py` runs through both evaluators: that is
the functions' shared contract test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from moderator.policy.cel.exprcode import ArgumentError, Code, EmitContext, coerce
from moderator.policy.cel.typesystem import CelType


@dataclass(frozen=True)
class FunctionExample:
    expr: str
    expected: Any
    """The value, or `CEL_ERROR` when the call evaluates to a CEL error."""
    input: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the `PolicyInput` it runs on."""


CEL_ERROR = "<CEL error>"
"""Expected value of an example whose evaluation is a CEL error."""

EXAMPLE_TERM_LISTS: dict[str, list[str]] = {"demo": ["casino", "free spins", "kill"]}
"""Resources the examples run against."""
EXAMPLE_BANKS = ("demo_pdq", "demo_md5")


class CelpyResources:
    """What the cel-python baseline binds functions to: term lists and the current input."""

    def __init__(self, term_lists: Mapping[str, Any]) -> None:
        self.term_lists = dict(term_lists)
        self.hash_matches: Mapping[str, int] = {}
        self.semantic_matches: Mapping[str, float] = {}


class PolicyFunction(ABC):
    name: ClassVar[str]
    signatures: ClassVar[tuple[str, ...]]
    """``[recv.]name(type|type, literal, ...) -> type``: the test checks `emit` accepts each
    listed type, refuses the other value types, and returns the declared type."""
    summary: ClassVar[str]
    examples: ClassVar[tuple[FunctionExample, ...]]

    @abstractmethod
    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        """Type-check a call and return its code; raise ArgumentError on a wrong call."""

    def celpy(self, resources: CelpyResources) -> Callable[..., Any] | None:
        """The cel-python implementation, or None when cel-python has it built in."""
        return None


def arity(args: Sequence[Code], count: int, name: str) -> None:
    if len(args) != count:
        raise ArgumentError(-1, f"{name}() takes {count} argument(s), got {len(args)}")


def typed_arg(code: Code, wanted: CelType, index: int, name: str) -> Code:
    """`code` as a value of type `wanted`; a dyn value gets a runtime check."""
    coerced = coerce(code, wanted)
    if coerced is None:
        where = "receiver" if index < 0 else f"argument {index + 1}"
        raise ArgumentError(index, f"{name}(): {where} must be {wanted}, got {code.type}")
    return coerced


def literal_string(code: Code, index: int, name: str, what: str) -> str:
    if not (code.is_const and isinstance(code.const, str)):
        raise ArgumentError(index, f"{name}(): {what} must be a string literal")
    return str(code.const)


def method_or_global(
    receiver: Code | None, args: Sequence[Code], count: int, name: str
) -> tuple[Code, list[Code]]:
    """`x.f(a)` and `f(x, a)` are the same call: (subject, remaining args)."""
    if receiver is not None:
        arity(args, count - 1, name)
        return receiver, list(args)
    arity(args, count, name)
    return args[0], list(args[1:])


def global_args(receiver: Code | None, args: Sequence[Code], count: int, name: str) -> list[Code]:
    if receiver is not None:
        raise ArgumentError(-1, f"{name}() is a function, not a method: write {name}(x)")
    arity(args, count, name)
    return list(args)
