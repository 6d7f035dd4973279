"""Functions over the policy's resources: term lists, hash banks and semantic banks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from moderator.policy.cel.exprcode import ArgumentError, Code, EmitContext
from moderator.policy.cel.function_base import (
    CelpyResources,
    FunctionExample,
    PolicyFunction,
    global_args,
    literal_string,
    method_or_global,
    typed_arg,
)
from moderator.policy.cel.typesystem import (
    BOOL,
    DOUBLE,
    INT,
    STRING,
)


class _TermFunction(PolicyFunction):
    counting: ClassVar[bool]

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        text, rest = method_or_global(receiver, args, 2, self.name)
        text = typed_arg(text, STRING, -1 if receiver is not None else 0, self.name)
        index = 0 if receiver is not None else 1
        name = literal_string(rest[0], index, self.name, "the term list name")
        terms = ctx.term_list(name)
        if terms is None:
            raise ArgumentError(index, f"{self.name}(): no term list named {name!r}")
        bound = ctx.constant(terms)
        kind = "count" if self.counting else "matches"
        result = INT if self.counting else BOOL
        if text.origin == "post.caption":
            return Code(f"{bound}.{kind}_forms(P.caption_forms())", result)
        return Code(f"{bound}.{kind}({text.src})", result, fails=text.fails)

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        from celpy import celtypes

        if self.counting:
            return lambda text, name: celtypes.IntType(resources.term_lists[name].count(text))
        return lambda text, name: celtypes.BoolType(resources.term_lists[name].matches(text))


class HasTerm(_TermFunction):
    name = "has_term"
    counting = False
    signatures = ("has_term(string, literal) -> bool", "string.has_term(literal) -> bool")
    summary = (
        "Whether the text contains a word or phrase of the named term list, on word "
        "boundaries, case-folded, accents stripped, with leetspeak undone (k1ll = kill)."
    )
    examples = (
        FunctionExample('has_term(post.caption, "demo")', True, {"caption": "Get FREE   spins!"}),
        FunctionExample('has_term(post.caption, "demo")', True, {"caption": "i will k1ll"}),
        FunctionExample('has_term(post.caption, "demo")', False, {"caption": "skill casinos"}),
        FunctionExample('"CASINO night".has_term("demo")', True),
    )


class CountTerms(_TermFunction):
    name = "count_terms"
    counting = True
    signatures = ("count_terms(string, literal) -> int", "string.count_terms(literal) -> int")
    summary = "How many words or phrases of the named term list the text contains."
    examples = (
        FunctionExample('count_terms(post.caption, "demo")', 2, {"caption": "casino: free spins"}),
        FunctionExample('count_terms("nothing here", "demo")', 0),
    )


class _BankFunction(PolicyFunction):
    def _bank(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> str:
        (arg,) = global_args(receiver, args, 1, self.name)
        name = literal_string(arg, 0, self.name, "the bank name")
        if not ctx.has_bank(name):
            raise ArgumentError(0, f"{self.name}(): no hash bank named {name!r}")
        return name


class BankMatch(_BankFunction):
    name = "bank_match"
    signatures = ("bank_match(literal) -> bool",)
    summary = (
        "Whether the post's image matches the named hash bank (PDQ within the bank's "
        "distance threshold and above its quality floor; MD5/SHA-256 exactly)."
    )
    examples = (
        FunctionExample('bank_match("demo_pdq")', True, {"hash_matches": {"demo_pdq": 12}}),
        FunctionExample('bank_match("demo_md5")', False, {"hash_matches": {"demo_pdq": 12}}),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        return Code(f"({self._bank(receiver, args, ctx)!r} in H)", BOOL)

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        from celpy import celtypes

        return lambda name: celtypes.BoolType(str(name) in resources.hash_matches)


class BankDistance(_BankFunction):
    name = "bank_distance"
    signatures = ("bank_distance(literal) -> int",)
    summary = "Hamming distance of the nearest match in the bank (0 for exact banks), -1 if none."
    examples = (
        FunctionExample('bank_distance("demo_pdq")', 12, {"hash_matches": {"demo_pdq": 12}}),
        FunctionExample('bank_distance("demo_md5")', -1),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        return Code(f"H.get({self._bank(receiver, args, ctx)!r}, -1)", INT)

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        from celpy import celtypes

        return lambda name: celtypes.IntType(resources.hash_matches.get(str(name), -1))


_SEMANTIC_EXAMPLE = {
    "signals": {"semantic_banks": {"demo_semantic": {"similarity": 0.95, "nearest": "entry-7"}}}
}


class SemanticMatch(PolicyFunction):
    name = "semantic_match"
    signatures = ("semantic_match(literal) -> double",)
    summary = (
        "Best similarity (-1..1, in practice 0..1) of the post's joint image+caption vector to "
        "the named semantic bank, computed on the replica (docs/retrieval.md); 0.0 when the "
        "post has neither image nor caption, or the bank was not searched."
    )
    examples = (
        FunctionExample(
            'semantic_match("demo_semantic") > 0.92',
            True,
            _SEMANTIC_EXAMPLE,
        ),
        FunctionExample('semantic_match("demo_semantic")', 0.0),
    )

    def emit(self, receiver: Code | None, args: Sequence[Code], ctx: EmitContext) -> Code:
        (arg,) = global_args(receiver, args, 1, self.name)
        name = literal_string(arg, 0, self.name, "the semantic bank name")
        if not ctx.has_semantic_bank(name):
            raise ArgumentError(0, f"{self.name}(): no semantic bank named {name!r} is declared")
        return Code(f"P.semantic_match({name!r})", DOUBLE)

    def celpy(self, resources: CelpyResources) -> Callable[..., Any]:
        from celpy import celtypes

        return lambda name: celtypes.DoubleType(resources.semantic_matches.get(str(name), 0.0))
