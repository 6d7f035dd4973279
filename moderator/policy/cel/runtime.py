"""Helpers that generated policy code calls: CEL semantics that plain Python lacks.

CEL ints are 64-bit and overflow is an error; integer division truncates toward
zero; `&&` and `||` absorb an error on one side when the other side decides the
result; `dyn` values are checked against the static type they meet. Everything
here raises `CelEvalError` (or a Python arithmetic error) for a CEL error value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from moderator.policy.cel.errors import CelEvalError
from moderator.policy.cel.typesystem import Kind, kind_of_value

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

EVAL_ERRORS: tuple[type[Exception], ...] = (
    CelEvalError,
    ArithmeticError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
)
"""What a rule's evaluation may raise; a rule that raises one of these does not fire."""


def check_int(value: int) -> int:
    if value < INT64_MIN or value > INT64_MAX:
        raise CelEvalError("int64 overflow")
    return value


def int_div(left: int, right: int) -> int:
    if right == 0:
        raise CelEvalError("division by zero")
    quotient = abs(left) // abs(right)
    return check_int(quotient if (left < 0) == (right < 0) else -quotient)


def int_mod(left: int, right: int) -> int:
    if right == 0:
        raise CelEvalError("modulus by zero")
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder


def double_div(left: float, right: float) -> float:
    if right == 0.0:
        if left == 0.0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


def lazy_or(left: Callable[[], bool], right: Callable[[], bool]) -> bool:
    """CEL `||`: true if either side is true, even when the other side is an error."""
    try:
        if left():
            return True
    except EVAL_ERRORS:
        if right():
            return True
        raise
    return right()


def lazy_and(left: Callable[[], bool], right: Callable[[], bool]) -> bool:
    """CEL `&&`: false if either side is false, even when the other side is an error."""
    try:
        if not left():
            return False
    except EVAL_ERRORS:
        if not right():
            return False
        raise
    return right()


def exists(predicate: Callable[[Any], bool], items: Iterable[Any]) -> bool:
    """`exists` macro whose predicate may fail: a true element wins over an error."""
    failure: Exception | None = None
    for item in items:
        try:
            if predicate(item):
                return True
        except EVAL_ERRORS as exc:
            failure = exc
    if failure is not None:
        raise failure
    return False


def all_of(predicate: Callable[[Any], bool], items: Iterable[Any]) -> bool:
    """`all` macro whose predicate may fail: a false element wins over an error."""
    failure: Exception | None = None
    for item in items:
        try:
            if not predicate(item):
                return False
        except EVAL_ERRORS as exc:
            failure = exc
    if failure is not None:
        raise failure
    return True


def exists_one(predicate: Callable[[Any], bool], items: Iterable[Any]) -> bool:
    return sum(1 for item in items if predicate(item)) == 1


def list_index(items: Sequence[Any], index: int) -> Any:
    if index < 0 or index >= len(items):
        raise CelEvalError(f"index {index} out of range")
    return items[index]


def as_kind(kind: Kind, value: Any) -> Any:
    """A `dyn` value used where `kind` is required: return it, or raise a CEL error."""
    if kind_of_value(value) is not kind:
        raise CelEvalError(f"expected {kind.value}, got {kind_of_value(value).value}")
    return value


def dyn_field(value: Any, name: str) -> Any:
    """`x.name` on a dyn value: only maps have fields."""
    if not isinstance(value, Mapping):
        raise CelEvalError(f"no field {name!r} on {kind_of_value(value).value}")
    return value[name]


def dyn_has(value: Any, name: str) -> bool:
    if not isinstance(value, Mapping):
        raise CelEvalError(f"has() on {kind_of_value(value).value}")
    return name in value


def dyn_index(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return value[as_kind(Kind.STRING, key)]
    if isinstance(value, list | tuple):
        return list_index(value, as_kind(Kind.INT, key))
    raise CelEvalError(f"cannot index {kind_of_value(value).value}")


def dyn_eq(left: Any, right: Any) -> bool:
    """Heterogeneous equality: values of different kinds are not equal (no error)."""
    left_kind, right_kind = kind_of_value(left), kind_of_value(right)
    if left_kind is not right_kind:
        return False
    return bool(left == right)


_ORDERED = frozenset({Kind.INT, Kind.DOUBLE, Kind.STRING, Kind.BOOL})


def dyn_compare(op: str, left: Any, right: Any) -> bool:
    """`<`, `<=`, `>`, `>=` where a side is dyn: both sides must have the same ordered kind."""
    kind = kind_of_value(left)
    if kind is not kind_of_value(right) or kind not in _ORDERED:
        raise CelEvalError(f"no ordering between {kind.value} and {kind_of_value(right).value}")
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def dyn_in(item: Any, container: Any) -> bool:
    if isinstance(container, Mapping):
        return as_kind(Kind.STRING, item) in container
    if isinstance(container, list | tuple):
        return any(dyn_eq(item, element) for element in container)
    raise CelEvalError(f"'in' needs a list or map, got {kind_of_value(container).value}")


def dyn_size(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise CelEvalError(f"size() of {kind_of_value(value).value}")


def double_to_int(value: float) -> int:
    if math.isnan(value) or math.isinf(value):
        raise CelEvalError("int() of a non-finite double")
    return check_int(int(value))


def string_to_int(value: str) -> int:
    text = value.strip()
    if text != value or not text:
        raise CelEvalError(f"int() cannot parse {value!r}")
    try:
        return check_int(int(text, 10))
    except ValueError as exc:
        raise CelEvalError(f"int() cannot parse {value!r}") from exc


def string_to_double(value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise CelEvalError(f"double() cannot parse {value!r}") from exc


def bool_to_string(value: bool) -> str:
    return "true" if value else "false"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower_ascii(value: str) -> str:
    return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)


def dyn_convert(kind: Kind, value: Any) -> Any:
    """int(), double() or string() of a dyn value."""
    source = kind_of_value(value)
    if kind is Kind.INT:
        if source is Kind.INT:
            return value
        if source is Kind.DOUBLE:
            return double_to_int(value)
        if source is Kind.STRING:
            return string_to_int(value)
    elif kind is Kind.DOUBLE:
        if source is Kind.DOUBLE:
            return value
        if source is Kind.INT:
            return float(value)
        if source is Kind.STRING:
            return string_to_double(value)
    elif kind is Kind.STRING:
        if source is Kind.STRING:
            return value
        if source is Kind.INT:
            return str(value)
        if source is Kind.BOOL:
            return bool_to_string(value)
    raise CelEvalError(f"cannot convert {source.value} to {kind.value}")


def helpers() -> dict[str, Any]:
    """Names generated code may call, bound into its namespace."""
    return {
        "_ck": check_int,
        "_idiv": int_div,
        "_imod": int_mod,
        "_fdiv": double_div,
        "_or": lazy_or,
        "_and": lazy_and,
        "_exists": exists,
        "_all": all_of,
        "_exists_one": exists_one,
        "_index": list_index,
        "_as": as_kind,
        "_K": Kind,
        "_dfield": dyn_field,
        "_dhas": dyn_has,
        "_dindex": dyn_index,
        "_deq": dyn_eq,
        "_dcmp": dyn_compare,
        "_din": dyn_in,
        "_dsize": dyn_size,
        "_d2i": double_to_int,
        "_s2i": string_to_int,
        "_s2d": string_to_double,
        "_b2s": bool_to_string,
        "_lower": lower_ascii,
        "_dconv": dyn_convert,
        "_ERRORS": EVAL_ERRORS,
    }
