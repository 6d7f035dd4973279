"""The policy language: CEL type-checked and compiled to Python, once per rule at load.

What a policy *is* (files, rules, banks, the engine) lives in `moderator.policy`
and uses the language only through these names; nothing here imports from it.
"""

from moderator.policy.cel.compiler import CompileEnv, ExpressionCompiler
from moderator.policy.cel.context import prologue
from moderator.policy.cel.errors import CelEvalError, ExpressionError
from moderator.policy.cel.expression import CompiledExpression
from moderator.policy.cel.function_base import CelpyResources
from moderator.policy.cel.functions import FUNCTIONS
from moderator.policy.cel.runtime import EVAL_ERRORS

__all__ = [
    "EVAL_ERRORS",
    "FUNCTIONS",
    "CelEvalError",
    "CelpyResources",
    "CompileEnv",
    "CompiledExpression",
    "ExpressionCompiler",
    "ExpressionError",
    "prologue",
]
