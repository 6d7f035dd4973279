"""Contract test of the built-in functions: every function, every example, both evaluators.

Each `PolicyFunction` documents itself and ships examples; here each example is
compiled to Python and also run through cel-python's interpreter with the same
function bound, and both must give the expected value (or both a CEL error).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from moderator.policy.cel.errors import ExpressionError
from moderator.policy.cel.expression import CompiledExpression
from moderator.policy.cel.functions import (
    CEL_ERROR,
    EXAMPLE_BANKS,
    EXAMPLE_TERM_LISTS,
    FUNCTIONS,
    FunctionExample,
    PolicyFunction,
)
from moderator.policy.cel.runtime import EVAL_ERRORS
from moderator.policy.celbaseline import evaluate_expression
from moderator.policy.inputs import PolicyInput
from moderator.policy.terms import TermList

CATEGORIES = ("hate", "violence")
TERM_LISTS = {name: TermList(name, terms) for name, terms in EXAMPLE_TERM_LISTS.items()}
CASES = [
    pytest.param(function, example, id=f"{function.name}:{example.expr}")
    for function in FUNCTIONS.values()
    for example in function.examples
]


def _input(example: FunctionExample) -> PolicyInput:
    fields: dict[str, Any] = dict(example.input)
    scores = {c: 0.0 for c in CATEGORIES} | fields.pop("scores", {})
    return PolicyInput(scores=scores, **fields)


def ours(example: FunctionExample) -> Any:
    expression = CompiledExpression(example.expr, CATEGORIES, TERM_LISTS, EXAMPLE_BANKS)
    try:
        return expression.evaluate(_input(example))
    except EVAL_ERRORS:
        return CEL_ERROR


def cel_python(example: FunctionExample) -> Any:
    from celpy.evaluation import CELEvalError

    try:
        return evaluate_expression(example.expr, _input(example), TERM_LISTS)
    except CELEvalError:
        return CEL_ERROR


@pytest.mark.parametrize("function", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_every_function_documents_itself(function: PolicyFunction) -> None:
    assert function.summary and function.signatures
    assert function.examples, f"{function.name} has no examples"
    for example in function.examples:
        assert function.name in example.expr


@pytest.mark.parametrize(("function", "example"), CASES)
def test_compiled_example(function: PolicyFunction, example: FunctionExample) -> None:
    assert ours(example) == example.expected


@pytest.mark.parametrize(("function", "example"), CASES)
def test_cel_python_agrees(function: PolicyFunction, example: FunctionExample) -> None:
    assert cel_python(example) == example.expected


@pytest.mark.parametrize("function", FUNCTIONS.values(), ids=list(FUNCTIONS))
def test_wrong_calls_are_load_errors(function: PolicyFunction) -> None:
    for call in (f"{function.name}()", f"{function.name}(1, 2, 3, [])"):
        with pytest.raises(ExpressionError) as caught:
            CompiledExpression(call, CATEGORIES, TERM_LISTS, EXAMPLE_BANKS)
        assert caught.value.line == 1 and caught.value.column >= 1


# -- signatures: what each function's documented signatures promise, checked against emit --

_SIGNATURE = re.compile(r"^(?:\(?([\w|]+)\)?\.)?(\w+)\((.*)\) -> (\w+)$")
_VALUES = {
    "string": "post.caption",
    "int": "author.strikes",
    "double": "scores.hate",
    "bool": "post.has_image",
    "list": "post.problems",
    "map": "scores",
}
_LITERALS = {"matches": '"a+"', "bank_match": '"demo_pdq"', "bank_distance": '"demo_pdq"'}


def _slots(signature: str) -> tuple[list[str] | None, str, list[list[str]], str]:
    """(receiver alternatives or None, name, alternatives per argument, result)."""
    match = _SIGNATURE.match(signature)
    assert match, f"unreadable signature {signature!r}"
    receiver, name, args, result = match.groups()
    slots = [arg.split("|") for arg in args.split(", ") if arg]
    if slots and slots[-1] == ["..."]:
        slots[-1] = slots[-2]  # `a, b, ...`: a third of the same type
    return (receiver.split("|") if receiver else None), name, slots, result


def _call(name: str, receiver: str | None, args: list[str]) -> str:
    values = [_LITERALS.get(name, '"demo"') if a == "literal" else _VALUES[a] for a in args]
    call = f"{name}({', '.join(values)})"
    return f"{_VALUES[receiver]}.{call}" if receiver else call


def _compile(text: str) -> CompiledExpression:
    return CompiledExpression(text, CATEGORIES, TERM_LISTS, EXAMPLE_BANKS)


SIGNATURES = [
    pytest.param(function, signature, id=signature)
    for function in FUNCTIONS.values()
    for signature in function.signatures
]


@pytest.mark.parametrize(("function", "signature"), SIGNATURES)
def test_signatures_say_what_emit_accepts_and_returns(
    function: PolicyFunction, signature: str
) -> None:
    receivers, name, slots, result = _slots(signature)
    assert name == function.name
    positions = [receivers or [None], *slots]
    for index, alternatives in enumerate(positions):
        for kind in alternatives:
            chosen = [kind if i == index else p[0] for i, p in enumerate(positions)]
            text = _call(name, chosen[0], chosen[1:])
            assert str(_compile(text).type) == result, text
        if alternatives == [None] or alternatives == ["literal"]:
            continue
        for kind in set(_VALUES) - set(alternatives):
            chosen = [kind if i == index else p[0] for i, p in enumerate(positions)]
            text = _call(name, chosen[0], chosen[1:])
            with pytest.raises(ExpressionError):
                _compile(text)
