"""The language's own errors, apart from the policy file's (`moderator.policy.errors`).

`ExpressionError` is positioned inside one CEL expression; the loader turns it
into a `PolicyProblem` positioned in the file. `CelEvalError` is a CEL error
value at evaluation time: the rule that raised it does not fire.
"""

from __future__ import annotations


class ExpressionError(Exception):
    """A CEL expression does not parse or type-check; line and column are 1-based, in the text."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class CelEvalError(Exception):
    """A CEL error value: division by zero, overflow, a missing key, a wrong dynamic type."""
