"""The static types of policy expressions: a small subset of CEL's type system.

Expressions are type-checked once, at load, against the typed evaluation
context (`context.py`), so the generated Python never checks types on the hot
path except where a value is `dyn` (post metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    BOOL = "bool"
    INT = "int"
    DOUBLE = "double"
    STRING = "string"
    LIST = "list"
    MAP = "map"
    NULL = "null_type"
    DYN = "dyn"
    OBJECT = "object"


@dataclass(frozen=True, slots=True)
class CelType:
    kind: Kind
    param: CelType | None = None
    """Element type of a list, value type of a map (map keys are always strings here)."""
    name: str = ""
    """Name of an object type (``Post``, ``Author``)."""

    def __str__(self) -> str:
        if self.kind is Kind.LIST:
            return f"list({self.param})"
        if self.kind is Kind.MAP:
            return f"map(string, {self.param})"
        if self.kind is Kind.OBJECT:
            return self.name
        return self.kind.value

    @property
    def is_dyn(self) -> bool:
        return self.kind is Kind.DYN


BOOL = CelType(Kind.BOOL)
INT = CelType(Kind.INT)
DOUBLE = CelType(Kind.DOUBLE)
STRING = CelType(Kind.STRING)
NULL = CelType(Kind.NULL)
DYN = CelType(Kind.DYN)


def list_of(element: CelType) -> CelType:
    return CelType(Kind.LIST, element)


def map_of(value: CelType) -> CelType:
    return CelType(Kind.MAP, value)


def object_type(name: str) -> CelType:
    return CelType(Kind.OBJECT, name=name)


def assignable(expected: CelType, actual: CelType) -> bool:
    """Whether a value of type `actual` may stand where `expected` is wanted."""
    if expected.is_dyn or actual.is_dyn:
        return True
    if expected.kind is not actual.kind:
        return False
    if expected.kind in (Kind.LIST, Kind.MAP):
        return assignable(expected.param or DYN, actual.param or DYN)
    return expected.name == actual.name


def unify(first: CelType, second: CelType) -> CelType | None:
    """The common type of two branches or list elements, or None when they do not mix."""
    if first == second:
        return first
    if first.is_dyn or second.is_dyn:
        return DYN
    if first.kind is second.kind and first.kind in (Kind.LIST, Kind.MAP):
        inner = unify(first.param or DYN, second.param or DYN)
        return None if inner is None else CelType(first.kind, inner)
    return None


def kind_of_value(value: object) -> Kind:
    """The CEL kind of a runtime Python value (for `dyn` checks)."""
    if value is None:
        return Kind.NULL
    if isinstance(value, bool):
        return Kind.BOOL
    if isinstance(value, int):
        return Kind.INT
    if isinstance(value, float):
        return Kind.DOUBLE
    if isinstance(value, str):
        return Kind.STRING
    if isinstance(value, list | tuple):
        return Kind.LIST
    if isinstance(value, dict):
        return Kind.MAP
    return Kind.DYN
