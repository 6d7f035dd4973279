"""Built-in functions of policy expressions, by name: `FUNCTIONS`.

The CEL standard ones (size, contains, startsWith, endsWith, matches, int,
double, string) plus lowerAscii, max and min here; term-list and hash-bank
functions in `functions_ext.py`. The contract they all follow is in
`function_base.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from moderator.policy.cel.exprcode import ArgumentError, Code, EmitContext
from moderator.policy.cel.function_base import (
    CEL_ERROR,
    EXAMPLE_BANKS,
    EXAMPLE_TERM_LISTS,
    CelpyResources,
    FunctionExample,
    PolicyFunction,
    arity,
    global_args,
    literal_string,
    method_or_global,
    typed_arg,
)
from moderator.policy.cel.functions_ext import (
    BankDistance,
    BankMatch,
    CountTerms,
    HasTerm,
    SemanticMatch,
)
from moderator.policy.cel.runtime import lower_ascii
from moderator.policy.cel.saferegex import UnsafePatternError
from moderator.policy.cel.typesystem import (
    BOOL,
    DOUBLE,
    INT,
    STRING,
    Kind,
)

__all__ = [
    "CEL_ERROR",
    "EXAMPLE_BANKS",
    "EXAMPLE_TERM_LISTS",
    "FUNCTIONS",
    "CelpyResources",
    "FunctionExample",
    "PolicyFunction",
]


class Size(PolicyFunction):
    name = "size"
    signatures = ("size(string|list|map) -> int", "(string|list|map).size() -> int")
    summary = "Length of a string (code points), list or map."
    examples = (
        FunctionExample('size("héllo")', 5),
        FunctionExample("size([1, 2, 3])", 3),
        FunctionExample("post.caption.size()", 3, {"caption": "abc"}),
        FunctionExample("size(post.metadata)", 1, {"metadata": {"k": 1}}),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        subject, _ = method_or_global(receiver, args, 1, self.name)
        if subject.type.is_dyn:
            return Code(f"_dsize({subject.src})", INT, fails=True)
        if subject.type.kind not in (Kind.STRING, Kind.LIST, Kind.MAP):
            raise ArgumentError(0, f"size() needs a string, list or map, got {subject.type}")
        return Code(f"len({subject.src})", INT, fails=subject.fails)


class _StringPredicate(PolicyFunction):
    template: ClassVar[str]

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        if receiver is None:
            raise ArgumentError(-1, f"{self.name}() is a method: write text.{self.name}(x)")
        arity(args, 1, self.name)
        subject = typed_arg(receiver, STRING, -1, self.name)
        other = typed_arg(args[0], STRING, 0, self.name)
        return Code(
            self.template.format(s=subject.src, a=other.src),
            BOOL,
            fails=subject.fails or other.fails,
        )


class Contains(_StringPredicate):
    name = "contains"
    signatures = ("string.contains(string) -> bool",)
    summary = "Substring test (case-sensitive, no word boundaries)."
    template = "({a} in {s})"
    examples = (
        FunctionExample('"moderation".contains("era")', True),
        FunctionExample('post.caption.contains("X")', False, {"caption": "xyz"}),
    )


class StartsWith(_StringPredicate):
    name = "startsWith"
    signatures = ("string.startsWith(string) -> bool",)
    summary = "Prefix test."
    template = "{s}.startswith({a})"
    examples = (FunctionExample('post.lang.startsWith("en")', True, {"lang": "en-GB"}),)


class EndsWith(_StringPredicate):
    name = "endsWith"
    signatures = ("string.endsWith(string) -> bool",)
    summary = "Suffix test."
    template = "{s}.endswith({a})"
    examples = (FunctionExample('"photo.png".endsWith(".png")', True),)


class Matches(PolicyFunction):
    name = "matches"
    signatures = ("string.matches(literal) -> bool", "matches(string, literal) -> bool")
    summary = (
        "Unanchored regular-expression search with RE2 semantics (linear time; "
        "no backreferences or look-arounds). The pattern must be a literal."
    )
    examples = (
        FunctionExample(
            'post.caption.matches("^free\\\\s+spins?")', True, {"caption": "free  spin"}
        ),
        FunctionExample('matches("order 66", "[0-9]+")', True),
        FunctionExample('"abc".matches("^b")', False),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        subject, rest = method_or_global(receiver, args, 2, self.name)
        subject = typed_arg(subject, STRING, -1 if receiver is not None else 0, self.name)
        index = 0 if receiver is not None else 1
        pattern = literal_string(rest[0], index, self.name, "the pattern")
        try:
            regex = ctx.regex(pattern)
        except UnsafePatternError as exc:
            raise ArgumentError(index, f"matches(): {exc}") from exc
        return Code(f"{ctx.constant(regex)}.search({subject.src})", BOOL, fails=subject.fails)


class LowerAscii(PolicyFunction):
    name = "lowerAscii"
    signatures = ("string.lowerAscii() -> string",)
    summary = "ASCII letters lower-cased, other characters unchanged (CEL strings extension)."
    examples = (FunctionExample('"ÀBC".lowerAscii()', "Àbc"),)

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        if receiver is None:
            raise ArgumentError(-1, "lowerAscii() is a method: write text.lowerAscii()")
        arity(args, 0, self.name)
        subject = typed_arg(receiver, STRING, -1, self.name)
        return Code(f"_lower({subject.src})", STRING, fails=subject.fails)

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        from celpy import celtypes

        return lambda text: celtypes.StringType(lower_ascii(str(text)))


class ToInt(PolicyFunction):
    name = "int"
    signatures = ("int(int|double|string) -> int",)
    summary = "Conversion to int: doubles truncate toward zero; a bad string is an error."
    examples = (
        FunctionExample("int(2.7)", 2),
        FunctionExample("int(-2.7)", -2),
        FunctionExample('int("42")', 42),
        FunctionExample('int("x")', CEL_ERROR),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        (value,) = global_args(receiver, args, 1, self.name)
        kind = value.type.kind
        if kind is Kind.DYN:
            return Code(f"_dconv(_K.INT, {value.src})", INT, fails=True)
        if kind is Kind.INT:
            return value
        if kind is Kind.DOUBLE:
            return Code(f"_d2i({value.src})", INT, fails=True)
        if kind is Kind.STRING:
            return Code(f"_s2i({value.src})", INT, fails=True)
        raise ArgumentError(0, f"int() needs an int, double or string, got {value.type}")


class ToDouble(PolicyFunction):
    name = "double"
    signatures = ("double(int|double|string) -> double",)
    summary = "Conversion to double; a bad string is an error."
    examples = (FunctionExample("double(3)", 3.0), FunctionExample('double("0.5")', 0.5))

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        (value,) = global_args(receiver, args, 1, self.name)
        kind = value.type.kind
        if kind is Kind.DYN:
            return Code(f"_dconv(_K.DOUBLE, {value.src})", DOUBLE, fails=True)
        if kind is Kind.DOUBLE:
            return value
        if kind is Kind.INT:
            return Code(f"float({value.src})", DOUBLE, fails=value.fails)
        if kind is Kind.STRING:
            return Code(f"_s2d({value.src})", DOUBLE, fails=True)
        raise ArgumentError(0, f"double() needs an int, double or string, got {value.type}")


class ToString(PolicyFunction):
    name = "string"
    signatures = ("string(int|string|bool) -> string",)
    summary = "Conversion to string."
    examples = (FunctionExample("string(12)", "12"), FunctionExample("string(true)", "true"))

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        (value,) = global_args(receiver, args, 1, self.name)
        kind = value.type.kind
        if kind is Kind.DYN:
            return Code(f"_dconv(_K.STRING, {value.src})", STRING, fails=True)
        if kind is Kind.STRING:
            return value
        if kind is Kind.INT:
            return Code(f"str({value.src})", STRING, fails=value.fails)
        if kind is Kind.BOOL:
            return Code(f"_b2s({value.src})", STRING, fails=value.fails)
        raise ArgumentError(0, f"string() needs an int, string or bool, got {value.type}")

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        """cel-python's own string(true) gives "True"; CEL says "true"."""
        from celpy import celtypes

        def convert(value: Any) -> Any:
            if isinstance(value, celtypes.BoolType):
                return celtypes.StringType("true" if value else "false")
            return celtypes.StringType(str(value))

        return convert


class _Extreme(PolicyFunction):
    builtin: ClassVar[str]

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        if receiver is not None or len(args) < 2:
            raise ArgumentError(-1, f"{self.name}() takes two or more numbers: {self.name}(a, b)")
        first = args[0].type
        if first not in (INT, DOUBLE):
            raise ArgumentError(0, f"{self.name}() needs ints or doubles, got {first}")
        for index, arg in enumerate(args):
            if arg.type != first:
                raise ArgumentError(
                    index, f"{self.name}(): all arguments must be {first}, got {arg.type}"
                )
        srcs = ", ".join(arg.src for arg in args)
        return Code(f"{self.builtin}({srcs})", first, fails=any(a.fails for a in args))

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        pick = max if self.builtin == "max" else min
        return lambda *values: pick(values)


class Max(_Extreme):
    name = "max"
    builtin = "max"
    signatures = ("max(double, double, ...) -> double", "max(int, int, ...) -> int")
    summary = "The largest argument; all arguments of one numeric type."
    examples = (
        FunctionExample(
            "max(scores.hate, scores.violence)", 0.7, {"scores": {"hate": 0.2, "violence": 0.7}}
        ),
        FunctionExample("max(1, 5, 3)", 5),
    )


class Min(_Extreme):
    name = "min"
    builtin = "min"
    signatures = ("min(double, double, ...) -> double", "min(int, int, ...) -> int")
    summary = "The smallest argument; all arguments of one numeric type."
    examples = (FunctionExample("min(0.5, 0.25)", 0.25), FunctionExample("min(2, -1)", -1))


FUNCTIONS: dict[str, PolicyFunction] = {
    function.name: function
    for function in (
        Size(),
        Contains(),
        StartsWith(),
        EndsWith(),
        Matches(),
        LowerAscii(),
        ToInt(),
        ToDouble(),
        ToString(),
        Max(),
        Min(),
        HasTerm(),
        CountTerms(),
        BankMatch(),
        BankDistance(),
        SemanticMatch(),
    )
}
"""Every built-in function by name."""
