"""Errors of a policy file.

`PolicyError` is what a user sees: every problem in a policy file is one line
``file:line:column: field: message``. The language's errors (positioned in one
expression, or raised while evaluating) are in `moderator.policy.cel.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moderator.errors import ModeratorError


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in a policy (or cases) file, located as precisely as known."""

    path: str
    line: int | None
    column: int | None
    field: str
    message: str

    def render(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class PolicyError(ModeratorError):
    """A policy file is invalid or cannot be read; the message names file, line, column, field."""

    def __init__(self, message: str, problems: Sequence[PolicyProblem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def from_problems(cls, headline: str, problems: Sequence[PolicyProblem]) -> PolicyError:
        lines = [headline, *(problem.render() for problem in problems)]
        return cls("\n".join(lines), problems)
