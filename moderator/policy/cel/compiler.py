"""CEL expression → type-checked Python source, once per rule at load.

cel-python's Lark parser gives the syntax tree; the compiler walks it, checks
every operation against the typed context (`context.py`) and the built-in
functions (`functions.py`), and emits one Python expression per rule. Unknown
identifiers, unknown categories, unknown fields, wrong argument types and
mixed int/double arithmetic are `ExpressionError`s with the line and column
inside the expression. Generated code never contains user text except through
`repr()` of parsed literals, so a policy cannot inject Python.

This module holds the structure and the operators; `names.py` the names,
fields, calls and literals.
"""

from __future__ import annotations

from collections.abc import Callable

from moderator.policy.cel.errors import ExpressionError
from moderator.policy.cel.exprcode import Code, CompileEnv
from moderator.policy.cel.names import NameRules
from moderator.policy.cel.runtime import INT64_MAX, INT64_MIN
from moderator.policy.cel.syntax import (
    Node,
    as_bool,
    located_error,
    numeric_hint,
    param_of,
    parse,
    typed,
)
from moderator.policy.cel.typesystem import (
    BOOL,
    DOUBLE,
    INT,
    NULL,
    STRING,
    CelType,
    Kind,
    assignable,
    unify,
)

__all__ = ["CompileEnv", "ExpressionCompiler", "parse"]

_ORDERED = (INT, DOUBLE, STRING, BOOL)
_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


class ExpressionCompiler(NameRules):
    """Compiles one expression at a time against a `CompileEnv`; `visit` dispatches on the
    node's rule name to the handlers here and in `NameRules`."""

    def __init__(self, env: CompileEnv) -> None:
        self.env = env
        self._scope: dict[str, tuple[CelType, str]] = {}

    def compile_condition(self, text: str) -> Code:
        """A rule's `when`: must be bool (a dyn value is checked when evaluated)."""
        code = self.visit(parse(text))
        if code.type.is_dyn:
            return Code(f"_as(_K.BOOL, {code.src})", BOOL, fails=True)
        if code.type != BOOL:
            raise ExpressionError(f"a condition must be bool, this is {code.type}", 1, 1)
        return code

    def compile_value(self, text: str) -> Code:
        return self.visit(parse(text))

    def visit(self, tree: Node) -> Code:
        handler: Callable[[Node], Code] | None = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise located_error(tree, f"{tree.data} is not supported in policies")
        return handler(tree)

    # -- structure -------------------------------------------------------------------------

    def _pass(self, tree: Node) -> Code:
        return self.visit(tree.children[0])

    _member = _primary = _pass

    def _paren_expr(self, tree: Node) -> Code:
        return self.visit(tree.children[0])

    def _expr(self, tree: Node) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        cond, then, other = (self.visit(child) for child in tree.children)
        cond = as_bool(cond, tree.children[0], "the condition of ?:")
        result = unify(then.type, other.type)
        if result is None:
            raise located_error(tree, f"the branches of ?: differ: {then.type} and {other.type}")
        return Code(
            f"({then.src} if {cond.src} else {other.src})",
            result,
            fails=cond.fails or then.fails or other.fails,
        )

    def _logical(self, tree: Node, word: str, helper: str, op: str) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        left_node, right_node = tree.children
        left = as_bool(self.visit(left_node), left_node, f"the left side of {op}")
        right = as_bool(self.visit(right_node), right_node, f"the right side of {op}")
        if left.fails:
            src = f"{helper}(lambda: {left.src}, lambda: {right.src})"
        else:
            src = f"({left.src} {word} {right.src})"
        return Code(src, BOOL, fails=left.fails or right.fails)

    def _conditionalor(self, tree: Node) -> Code:
        return self._logical(tree, "or", "_or", "||")

    def _conditionaland(self, tree: Node) -> Code:
        return self._logical(tree, "and", "_and", "&&")

    # -- operators --------------------------------------------------------------------------

    def _relation(self, tree: Node) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        op_tree, right_node = tree.children
        left = self.visit(op_tree.children[0])
        right = self.visit(right_node)
        name = str(op_tree.data).removeprefix("relation_")
        fails = left.fails or right.fails
        if name == "in":
            return self._in(tree, left, right)
        op = _COMPARE[name]
        if op in ("==", "!="):
            return self._equality(tree, op, left, right)
        if left.type.is_dyn or right.type.is_dyn:
            return Code(f"_dcmp({op!r}, {left.src}, {right.src})", BOOL, fails=True)
        if left.type != right.type or left.type not in _ORDERED:
            raise located_error(
                right_node,
                f"'{op}' cannot compare {left.type} with {right.type}{numeric_hint(left, right)}",
            )
        return Code(f"({left.src} {op} {right.src})", BOOL, fails=fails)

    def _equality(self, tree: Node, op: str, left: Code, right: Code) -> Code:
        fails = left.fails or right.fails
        if left.type.is_dyn or right.type.is_dyn or NULL in (left.type, right.type):
            if NULL in (left.type, right.type) and not (
                left.type.kind in (Kind.NULL, Kind.DYN) and right.type.kind in (Kind.NULL, Kind.DYN)
            ):
                raise located_error(tree, f"'{op}' cannot compare {left.type} with {right.type}")
            src = f"_deq({left.src}, {right.src})"
            return Code(src if op == "==" else f"(not {src})", BOOL, fails=fails)
        if unify(left.type, right.type) is None:
            raise located_error(
                tree,
                f"'{op}' cannot compare {left.type} with {right.type}{numeric_hint(left, right)}",
            )
        return Code(f"({left.src} {op} {right.src})", BOOL, fails=fails)

    def _in(self, tree: Node, item: Code, container: Code) -> Code:
        fails = item.fails or container.fails
        kind = container.type.kind
        if kind is Kind.DYN or (
            kind is Kind.LIST and param_of(container).is_dyn and not item.type.is_dyn
        ):
            return Code(f"_din({item.src}, {container.src})", BOOL, fails=True)
        if kind is Kind.LIST:
            if not assignable(param_of(container), item.type):
                raise located_error(tree, f"'in' looks for {item.type} in {container.type}")
            if item.type.is_dyn:
                return Code(f"_din({item.src}, {container.src})", BOOL, fails=True)
            if container.is_const and all(isinstance(v, str | int) for v in container.const):
                members = self.env.constant(frozenset(container.const))
                return Code(f"({item.src} in {members})", BOOL, fails=fails)
            return Code(f"({item.src} in {container.src})", BOOL, fails=fails)
        if kind is Kind.MAP:
            item = typed(item, STRING, tree, "a map key")
            return Code(f"({item.src} in {container.src})", BOOL, fails=fails or item.fails)
        raise located_error(tree, f"'in' needs a list or map on its right, got {container.type}")

    def _arith_operands(self, tree: Node, op: str) -> tuple[Code, Code, CelType]:
        op_tree, right_node = tree.children
        left = self.visit(op_tree.children[0])
        right = self.visit(right_node)
        if left.type.is_dyn and right.type.is_dyn:
            raise located_error(
                tree, f"'{op}' on two dyn values: convert one with int(), double() or string()"
            )
        if left.type.is_dyn:
            left = typed(left, right.type, tree, f"the left side of '{op}'")
        elif right.type.is_dyn:
            right = typed(right, left.type, tree, f"the right side of '{op}'")
        if left.type != right.type:
            raise located_error(
                tree,
                f"'{op}' cannot combine {left.type} with {right.type}{numeric_hint(left, right)}",
            )
        return left, right, left.type

    def _addition(self, tree: Node) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        op = "+" if tree.children[0].data == "addition_add" else "-"
        left, right, kind_type = self._arith_operands(tree, op)
        fails = left.fails or right.fails
        src = f"({left.src} {op} {right.src})"
        if kind_type == INT:
            return Code(f"_ck{src}", INT, fails=True)
        if kind_type == DOUBLE or (op == "+" and kind_type.kind in (Kind.STRING, Kind.LIST)):
            return Code(src, kind_type, fails=fails)
        raise located_error(tree, f"'{op}' is not defined for {kind_type}")

    def _multiplication(self, tree: Node) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        name = str(tree.children[0].data).removeprefix("multiplication_")
        op = {"mul": "*", "div": "/", "mod": "%"}[name]
        left, right, kind_type = self._arith_operands(tree, op)
        fails = left.fails or right.fails
        if kind_type == INT:
            helper = {"*": "_ck", "/": "_idiv", "%": "_imod"}[op]
            args = f"({left.src} * {right.src})" if op == "*" else f"({left.src}, {right.src})"
            return Code(f"{helper}{args}", INT, fails=True)
        if kind_type == DOUBLE and op == "*":
            return Code(f"({left.src} * {right.src})", DOUBLE, fails=fails)
        if kind_type == DOUBLE and op == "/":
            return Code(f"_fdiv({left.src}, {right.src})", DOUBLE, fails=fails)
        raise located_error(tree, f"'{op}' is not defined for {kind_type}")

    def _unary(self, tree: Node) -> Code:
        if len(tree.children) == 1:
            return self.visit(tree.children[0])
        op_node, operand_node = tree.children
        operand = self.visit(operand_node)
        if op_node.data == "unary_not":
            operand = as_bool(operand, operand_node, "the operand of !")
            return Code(f"(not {operand.src})", BOOL, fails=operand.fails)
        if operand.type.is_dyn:
            raise located_error(tree, "'-' on a dyn value: convert it with int() or double() first")
        if operand.type == INT:
            if operand.is_const and INT64_MIN <= -operand.const <= INT64_MAX:
                return Code(repr(-operand.const), INT, const=-operand.const)
            return Code(f"_ck(-{operand.src})", INT, fails=True)
        if operand.type == DOUBLE:
            return Code(f"(-{operand.src})", DOUBLE, fails=operand.fails)
        raise located_error(tree, f"'-' is not defined for {operand.type}")
