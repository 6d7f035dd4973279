"""What the expression compiler passes around: a typed fragment of Python source."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from moderator.policy.cel.runtime import helpers
from moderator.policy.cel.saferegex import SafeRegex
from moderator.policy.cel.typesystem import CelType, assignable

# How a rule that reads semantic bank NAME records it in the policy's reads.
SEMANTIC_READ = "semantic:"


class _NotConstant:
    def __repr__(self) -> str:
        return "NOT_CONSTANT"


NOT_CONSTANT: Any = _NotConstant()


@dataclass(frozen=True, slots=True)
class Code:
    """A compiled sub-expression."""

    src: str
    """A Python expression over the generated function's locals (P, S, A, H)."""
    type: CelType
    fails: bool = False
    """Whether evaluating it can raise a CEL error (then `||`/`&&` must absorb it)."""
    const: Any = NOT_CONSTANT
    """The value, when known at load."""
    origin: str = ""
    """What it reads, when that enables a fast path: 'scores', 'post.caption'."""

    @property
    def is_const(self) -> bool:
        return self.const is not NOT_CONSTANT


def coerce(code: Code, wanted: CelType) -> Code | None:
    """`code` as a value of type `wanted` (a dyn value gets a runtime check), or None."""
    if code.type.is_dyn and not wanted.is_dyn:
        return Code(f"_as(_K.{wanted.kind.name}, {code.src})", wanted, fails=True)
    return code if assignable(wanted, code.type) else None


class ArgumentError(Exception):
    """A function argument is wrong; `index` is the argument's position (-1 = receiver)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


class TermSource(Protocol):
    """A term list as functions see it (`moderator.policy.terms.TermSource`)."""

    def matches(self, text: str) -> bool: ...

    def count(self, text: str) -> int: ...


class EmitContext(Protocol):
    """What the compiler offers a function while it emits code for a call."""

    def constant(self, value: object) -> str:
        """Bind `value` into the generated code's namespace; returns its name."""
        ...

    def term_list(self, name: str) -> TermSource | None: ...

    def has_bank(self, name: str) -> bool: ...

    def has_semantic_bank(self, name: str) -> bool: ...

    def regex(self, pattern: str) -> SafeRegex:
        """Compile once; raises UnsafePatternError."""
        ...


class CompileEnv:
    """Resources and the namespace generated code runs in; shared by a policy's rules."""

    def __init__(
        self,
        categories: Collection[str],
        term_lists: Mapping[str, TermSource] | None = None,
        banks: Collection[str] = (),
        semantic_banks: Collection[str] | None = None,
    ) -> None:
        self.categories = tuple(categories)
        self.term_lists = dict(term_lists or {})
        self.banks = frozenset(banks)
        self.semantic_banks = None if semantic_banks is None else frozenset(semantic_banks)
        """Declared semantic banks; None: the policy declares none, any name compiles."""
        self.namespace: dict[str, Any] = helpers()
        self.used: set[str] = set()
        """Inputs some rule reads: 'scores', 'post', 'author', 'banks', 'caption_terms'."""
        self._constants: dict[int, str] = {}
        self._regexes: dict[str, SafeRegex] = {}

    def constant(self, value: object) -> str:
        name = self._constants.get(id(value))
        if name is None:
            name = self._constants[id(value)] = f"_c{len(self._constants)}"
            self.namespace[name] = value
        return name

    def term_list(self, name: str) -> TermSource | None:
        return self.term_lists.get(name)

    def has_bank(self, name: str) -> bool:
        self.used.add("banks")
        return name in self.banks

    def has_semantic_bank(self, name: str) -> bool:
        # Recorded per rule, so the worker can check the replica serves every bank read.
        self.used.add(f"{SEMANTIC_READ}{name}")
        return self.semantic_banks is None or name in self.semantic_banks

    def regex(self, pattern: str) -> SafeRegex:
        regex = self._regexes.get(pattern)
        if regex is None:
            regex = self._regexes[pattern] = SafeRegex(pattern)
        return regex
