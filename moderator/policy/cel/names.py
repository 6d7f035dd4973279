"""Compiling names, fields, function calls, macros and literals (part of the compiler).

`NameRules`, the base of `ExpressionCompiler` (which supplies `visit`), holds the
rules for identifiers and `scores.<category>`, object fields, map and list
indexing, calls of built-in functions, `has()`, the comprehension macros and
literals.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import lark

from moderator.policy.cel.context import OBJECT_FIELDS, VARIABLES
from moderator.policy.cel.exprcode import ArgumentError, Code, CompileEnv
from moderator.policy.cel.functions import FUNCTIONS
from moderator.policy.cel.runtime import INT64_MAX, INT64_MIN
from moderator.policy.cel.syntax import (
    Node,
    as_bool,
    located_error,
    param_of,
    suggestion,
    token_of,
    typed,
    unwrap,
)
from moderator.policy.cel.typesystem import (
    BOOL,
    DOUBLE,
    DYN,
    INT,
    NULL,
    STRING,
    CelType,
    Kind,
    list_of,
    map_of,
    unify,
)

# What a rule reads of the text OCR found in the image.
_IMAGE_TEXT_FIELDS = frozenset({("Post", "image_text"), ("Signals", "ocr")})
MACROS = frozenset({"exists", "all", "exists_one", "filter", "map"})


class NameRules(ABC):
    """Compiles the leaves and calls of an expression; `ExpressionCompiler` supplies `visit`."""

    env: CompileEnv
    _scope: dict[str, tuple[CelType, str]]

    @abstractmethod
    def visit(self, tree: Node) -> Code:
        """Compile a sub-tree (the compiler's dispatch)."""

    def _ident(self, tree: Node) -> Code:
        token = tree.children[0]
        name = str(token)
        if name in self._scope:
            kind, pyname = self._scope[name]
            return Code(pyname, kind)
        spec = VARIABLES.get(name)
        if spec is None:
            known = [*VARIABLES, *self._scope]
            raise located_error(
                token,
                f"unknown identifier {name!r} (known: {', '.join(known)}){suggestion(name, known)}",
            )
        self.env.used.add(spec.origin)
        return Code(spec.code, spec.type, origin=spec.origin)

    _dot_ident = _ident

    def _member_dot(self, tree: Node) -> Code:
        receiver_node, token = tree.children
        receiver = self.visit(receiver_node)
        return self._select(receiver, str(token), token_of(token))

    def _select(self, receiver: Code, name: str, token: lark.Token) -> Code:
        kind = receiver.type.kind
        if kind is Kind.OBJECT:
            fields = OBJECT_FIELDS[receiver.type.name]
            spec = fields.get(name)
            if spec is None:
                raise located_error(
                    token,
                    f"{receiver.type.name} has no field {name!r} (fields: {', '.join(fields)})"
                    f"{suggestion(name, fields)}",
                )
            if (receiver.type.name, name) in _IMAGE_TEXT_FIELDS:
                self.env.used.add("image_text")  # the worker then also decides without it
            return Code(spec.code, spec.type, origin=f"{receiver.origin}.{name}")
        if kind is Kind.MAP:
            if receiver.origin == "scores":
                self._check_category(name, token)
                return Code(f"S[{name!r}]", DOUBLE)
            return Code(f"{receiver.src}[{name!r}]", param_of(receiver), fails=True)
        if kind is Kind.DYN:
            return Code(f"_dfield({receiver.src}, {name!r})", DYN, fails=True)
        raise located_error(token, f"{receiver.type} has no fields (selecting {name!r})")

    def _check_category(self, name: str, node: Node | lark.Token) -> None:
        if name not in self.env.categories:
            raise located_error(
                node,
                f"unknown category {name!r} (the policy's categories: "
                f"{', '.join(self.env.categories)}){suggestion(name, self.env.categories)}",
            )

    def _member_index(self, tree: Node) -> Code:
        receiver_node, index_node = tree.children
        receiver = self.visit(receiver_node)
        index = self.visit(index_node)
        kind = receiver.type.kind
        if kind is Kind.MAP:
            index = typed(index, STRING, index_node, "a map key")
            if receiver.origin == "scores" and index.is_const:
                self._check_category(index.const, index_node)
                return Code(f"S[{index.src}]", DOUBLE)
            return Code(f"{receiver.src}[{index.src}]", param_of(receiver), fails=True)
        if kind is Kind.LIST:
            index = typed(index, INT, index_node, "a list index")
            return Code(f"_index({receiver.src}, {index.src})", param_of(receiver), fails=True)
        if kind is Kind.DYN:
            return Code(f"_dindex({receiver.src}, {index.src})", DYN, fails=True)
        raise located_error(tree, f"{receiver.type} cannot be indexed")

    def _member_object(self, tree: Node) -> Code:
        raise located_error(tree, "message construction (Type{...}) is not supported in policies")

    def _call_args(self, tree: Node | None) -> list[Node]:
        return [] if tree is None else list(tree.children)

    def _member_dot_arg(self, tree: Node) -> Code:
        receiver_node, token, *rest = tree.children
        arg_nodes = self._call_args(rest[0] if rest else None)
        name = str(token)
        if name in MACROS:
            return self._macro(tree, name, receiver_node, arg_nodes)
        receiver = self.visit(receiver_node)
        return self._call(name, token_of(token), receiver, receiver_node, arg_nodes)

    def _ident_arg(self, tree: Node) -> Code:
        token, *rest = tree.children
        arg_nodes = self._call_args(rest[0] if rest else None)
        name = str(token)
        if name == "has":
            return self._has(tree, arg_nodes)
        return self._call(name, token_of(token), None, None, arg_nodes)

    _dot_ident_arg = _ident_arg

    def _call(
        self,
        name: str,
        token: lark.Token,
        receiver: Code | None,
        receiver_node: Node | None,
        arg_nodes: Sequence[Node],
    ) -> Code:
        function = FUNCTIONS.get(name)
        if function is None:
            raise located_error(
                token,
                f"unknown function {name!r}{suggestion(name, [*FUNCTIONS, 'has', *MACROS])}",
            )
        args = [self.visit(node) for node in arg_nodes]
        try:
            return function.emit(receiver, args, self.env)
        except ArgumentError as exc:
            if exc.index < 0 or exc.index >= len(arg_nodes):
                node: Node | lark.Token = (
                    receiver_node if exc.index < 0 and receiver_node else token
                )
            else:
                node = arg_nodes[exc.index]
            raise located_error(node, exc.message) from exc

    def _has(self, tree: Node, arg_nodes: Sequence[Node]) -> Code:
        select = unwrap(arg_nodes[0]) if len(arg_nodes) == 1 else None
        if select is None or select.data != "member_dot":
            raise located_error(
                tree, "has() takes one field selection, like has(post.metadata.source)"
            )
        receiver_node, token = select.children
        receiver = self.visit(receiver_node)
        name = str(token)
        kind = receiver.type.kind
        if kind is Kind.OBJECT:
            self._select(receiver, name, token_of(token))  # raises on an unknown field
            return Code("True", BOOL, const=True)
        if kind is Kind.MAP:
            if receiver.origin == "scores":
                self._check_category(name, token)
            return Code(f"({name!r} in {receiver.src})", BOOL, fails=receiver.fails)
        if kind is Kind.DYN:
            return Code(f"_dhas({receiver.src}, {name!r})", BOOL, fails=True)
        raise located_error(token, f"has() needs a map or message, got {receiver.type}")

    def _macro(
        self,
        tree: Node,
        name: str,
        receiver_node: Node,
        arg_nodes: Sequence[Node],
    ) -> Code:
        receiver = self.visit(receiver_node)
        variable = unwrap(arg_nodes[0]) if len(arg_nodes) == 2 else None
        if variable is None or variable.data != "ident":
            raise located_error(
                tree, f"{name}() takes a variable and an expression: {name}(x, x > 0)"
            )
        if receiver.type.kind is Kind.LIST:
            element = param_of(receiver)
        elif receiver.type.kind is Kind.MAP:
            element = STRING
        elif receiver.type.is_dyn:
            receiver = Code(f"_as(_K.LIST, {receiver.src})", list_of(DYN), fails=True)
            element = DYN
        else:
            raise located_error(receiver_node, f"{name}() needs a list or map, got {receiver.type}")
        var_name = str(variable.children[0])
        pyname = f"_v{len(self._scope)}_{var_name}"
        saved = self._scope.get(var_name)
        self._scope[var_name] = (element, pyname)
        try:
            body = self.visit(arg_nodes[1])
        finally:
            if saved is None:
                del self._scope[var_name]
            else:
                self._scope[var_name] = saved
        return emit_macro(name, receiver, body, pyname, arg_nodes[1])

    # -- literals ---------------------------------------------------------------------------------

    def _literal(self, tree: Node) -> Code:
        token = token_of(tree.children[0])
        kind, text = token.type, str(token)
        if kind == "INT_LIT":
            negative = text.startswith("-")
            digits = text[1:] if negative else text
            value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
            value = -value if negative else value
            if not INT64_MIN <= value <= INT64_MAX:
                raise located_error(token, f"int literal {text} is out of the int64 range")
            return Code(repr(value), INT, const=value)
        if kind == "FLOAT_LIT":
            number = float(text)
            src = repr(number) if math.isfinite(number) else self.env.constant(number)
            return Code(src, DOUBLE, const=number)
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            from celpy.evaluation import celstr

            string = str(celstr(token))
            return Code(repr(string), STRING, const=string)
        if kind == "BOOL_LIT":
            return Code(repr(text == "true"), BOOL, const=text == "true")
        if kind == "NULL_LIT":
            return Code("None", NULL, const=None)
        if kind == "UINT_LIT":
            raise located_error(token, "unsigned ints (1u) are not supported: write 1")
        raise located_error(token, "bytes literals are not supported in policies")

    def _list_lit(self, tree: Node) -> Code:
        items = [
            self.visit(node)
            for node in self._call_args(tree.children[0] if tree.children else None)
        ]
        element: CelType | None = items[0].type if items else DYN
        for item in items[1:]:
            element = unify(element or DYN, item.type)
            if element is None:
                raise located_error(
                    tree, "list elements must share one type (use dyn values for mixes)"
                )
        src = "(" + "".join(f"{item.src}, " for item in items) + ")"
        const = tuple(item.const for item in items) if all(i.is_const for i in items) else None
        code = Code(src, list_of(element or DYN), fails=any(i.fails for i in items))
        return code if const is None else Code(src, code.type, code.fails, const)

    def _map_lit(self, tree: Node) -> Code:
        nodes = self._call_args(tree.children[0] if tree.children else None)
        keys = [self.visit(node) for node in nodes[0::2]]
        values = [self.visit(node) for node in nodes[1::2]]
        for key, node in zip(keys, nodes[0::2], strict=True):
            typed(key, STRING, node, "a map key")
        value_type: CelType | None = values[0].type if values else DYN
        for value in values[1:]:
            value_type = unify(value_type or DYN, value.type)
            if value_type is None:
                raise located_error(tree, "map values must share one type")
        src = "{" + ", ".join(f"{k.src}: {v.src}" for k, v in zip(keys, values, strict=True)) + "}"
        return Code(src, map_of(value_type or DYN), fails=any(c.fails for c in (*keys, *values)))


def emit_macro(
    name: str,
    receiver: Code,
    body: Code,
    var: str,
    body_node: Node,
) -> Code:
    fails = receiver.fails or body.fails
    if name in ("exists", "all", "exists_one"):
        body = as_bool(body, body_node, f"the predicate of {name}()")
        if name == "exists_one":
            src = f"_exists_one(lambda {var}: {body.src}, {receiver.src})"
        elif body.fails:
            helper = "_exists" if name == "exists" else "_all"
            src = f"{helper}(lambda {var}: {body.src}, {receiver.src})"
        else:
            builtin = "any" if name == "exists" else "all"
            src = f"{builtin}({body.src} for {var} in {receiver.src})"
        return Code(src, BOOL, fails=fails or body.fails)
    if name == "filter":
        body = as_bool(body, body_node, "the predicate of filter()")
        src = f"tuple({var} for {var} in {receiver.src} if {body.src})"
        return Code(
            src, receiver.type if receiver.type.kind is Kind.LIST else list_of(STRING), fails
        )
    return Code(f"tuple({body.src} for {var} in {receiver.src})", list_of(body.type), fails)
