"""Parsing with cel-python's grammar, and the helpers the compiler's modules share."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any, TypeAlias

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from moderator.policy.cel.errors import ExpressionError
from moderator.policy.cel.exprcode import Code, coerce
from moderator.policy.cel.typesystem import BOOL, DOUBLE, DYN, INT, CelType

Node: TypeAlias = "lark.Tree[Any]"
"""A node of a parsed expression (its leaves are lark Tokens)."""


def parse(text: str) -> Node:
    """Parse with cel-python's grammar; syntax errors become ExpressionError."""
    from celpy.celparser import CELParser

    CELParser()  # builds the shared Lark parser on first use
    parser = CELParser.CEL_PARSER
    if parser is None:  # pragma: no cover - CELParser() sets it
        raise RuntimeError("cel-python did not build its parser")
    try:
        return parser.parse(text)
    except UnexpectedEOF as exc:
        raise ExpressionError("syntax error: the expression ends too early", *_end(text)) from exc
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            raise ExpressionError(
                "syntax error: the expression ends too early", *_end(text)
            ) from exc
        raise ExpressionError(
            f"syntax error: unexpected {exc.token.value!r}", exc.line, exc.column
        ) from exc
    except UnexpectedCharacters as exc:
        raise ExpressionError(
            f"syntax error: unexpected character {text[exc.pos_in_stream or 0]!r}",
            exc.line,
            exc.column,
        ) from exc
    except UnexpectedInput as exc:  # pragma: no cover - other Lark input errors
        raise ExpressionError(f"syntax error: {exc}", exc.line, exc.column) from exc


def _end(text: str) -> tuple[int, int]:
    lines = text.rstrip().split("\n")
    return len(lines), len(lines[-1]) + 1


def position(node: Node | lark.Token) -> tuple[int, int]:
    if isinstance(node, lark.Token):
        return node.line or 1, node.column or 1
    meta = node.meta
    if getattr(meta, "empty", True):
        return 1, 1
    return meta.line, meta.column


def located_error(node: Node | lark.Token, message: str) -> ExpressionError:
    return ExpressionError(message, *position(node))


def suggestion(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unwrap(tree: Node) -> Node | None:
    """Descend single-child wrapper nodes (expr → ... → member → primary) to the real node."""
    node = tree
    while (
        isinstance(node, lark.Tree)
        and len(node.children) == 1
        and isinstance(node.children[0], lark.Tree)
    ):
        node = node.children[0]
    return node if isinstance(node, lark.Tree) else None


def token_of(node: Node | lark.Token) -> lark.Token:
    if not isinstance(node, lark.Token):  # pragma: no cover - the grammar puts tokens here
        raise ExpressionError("internal: expected a token", *position(node))
    return node


def typed(code: Code, wanted: CelType, node: Node | lark.Token, what: str) -> Code:
    """`code` as a value of type `wanted`, or an error located at `node`."""
    coerced = coerce(code, wanted)
    if coerced is None:
        raise located_error(node, f"{what} must be {wanted}, got {code.type}")
    return coerced


def as_bool(code: Code, node: Node | lark.Token, what: str) -> Code:
    return typed(code, BOOL, node, what)


def param_of(code: Code) -> CelType:
    return code.type.param or DYN


def numeric_hint(left: Code, right: Code) -> str:
    if {left.type, right.type} == {INT, DOUBLE}:
        literal = left if left.type == INT and left.is_const else right
        if literal.is_const and literal.type == INT:
            return f" (write {literal.const}.0 for a double)"
        return " (convert with double() or int())"
    return ""
