"""Regular expressions that cannot backtrack catastrophically on user input.

Patterns are compiled with RE2 (``google-re2``), whose matching time is linear
in the input: ``(a+)+b`` on a long run of ``a`` costs the same as any other
pattern. RE2 rejects backreferences and look-arounds, and so does a policy.

Where ``google-re2`` is not installed, the fallback is Python's `re` restricted
to patterns that cannot backtrack exponentially: no backreferences, no
look-arounds, and no repeated group that itself contains a repeat or an
alternation (``(a+)+``, ``(a|aa)*``). Searched text is at most a post caption
(10,000 characters), which bounds the polynomial cases that remain.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

try:  # pragma: no branch - depends on the environment
    import re2 as _re2_module
    from re2 import _re2 as _re2_native
except ImportError:  # pragma: no cover - exercised only without google-re2
    _re2_module = None
    _re2_native = None

ENGINE = "re2" if _re2_native is not None else "re (restricted)"


class UnsafePatternError(ValueError):
    """A pattern is invalid or could backtrack catastrophically."""


class SafeRegex:
    """An unanchored search (`matches` in CEL) compiled once."""

    __slots__ = ("_native", "_python", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._native: Any = None
        self._python: re.Pattern[str] | None = None
        if _re2_native is not None and _re2_module is not None:
            options = _re2_module.Options()
            options.never_capture = True
            options.log_errors = False
            native = _re2_native.RE2(pattern.encode("utf-8"), options)
            if not native.ok():
                error = native.error()
                if isinstance(error, bytes):
                    error = error.decode("utf-8", "replace")
                raise UnsafePatternError(f"invalid pattern: {error}")
            self._native = native
        else:  # pragma: no cover - exercised only without google-re2
            self._python = compile_restricted(pattern)

    def search(self, text: str) -> bool:
        native = self._native
        if native is not None:
            data = text.encode("utf-8")
            return bool(native.Match(_UNANCHORED, data, 0, len(data))[0][0] != -1)
        python = self._python
        if python is None:  # pragma: no cover - __init__ sets one engine
            raise RuntimeError("SafeRegex has no engine")
        return python.search(text) is not None

    def __repr__(self) -> str:
        return f"SafeRegex({self.pattern!r})"


_UNANCHORED = _re2_native.RE2.Anchor.UNANCHORED if _re2_native is not None else None


def compile_restricted(pattern: str) -> re.Pattern[str]:
    """Python `re` limited to patterns without exponential backtracking."""
    try:
        from re import _parser

        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise UnsafePatternError(f"invalid pattern: {exc}") from exc
    _vet(list(parsed), inside_repeat=False)
    return re.compile(pattern)


def _vet(items: list[Any], inside_repeat: bool) -> None:
    from re import _constants as c

    for op, arg in items:
        if op in (c.GROUPREF, c.GROUPREF_EXISTS, c.ASSERT, c.ASSERT_NOT):
            raise UnsafePatternError("backreferences and look-arounds are not allowed")
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            _low, high, body = arg
            if inside_repeat and high > 1:
                raise UnsafePatternError("nested repetition is not allowed (e.g. (a+)+)")
            _vet(list(body), inside_repeat=inside_repeat or high > 1)
        elif op == c.SUBPATTERN:
            _vet(list(arg[-1]), inside_repeat)
        elif op == c.BRANCH:
            if inside_repeat:
                raise UnsafePatternError("repeated alternation is not allowed (e.g. (a|aa)*)")
            for branch in arg[1]:
                _vet(list(branch), inside_repeat)
        elif op == c.ATOMIC_GROUP:
            _vet(list(arg), inside_repeat)
