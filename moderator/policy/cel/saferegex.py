"""Regular expressions that cannot backtrack catastrophically on user input.

Patterns are compiled with RE2 (``google-re2``, a hard dependency), whose
matching time is linear in the input: ``(a+)+b`` on a long run of ``a`` costs
the same as any other pattern. RE2 rejects backreferences and look-arounds, and
so does a policy.
"""

from __future__ import annotations

import re2
from re2 import _re2

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class UnsafePatternError(ValueError):
    """A pattern is invalid or uses what RE2 refuses (backreferences, look-arounds)."""


class SafeRegex:
    """An unanchored search (`matches` in CEL) compiled once."""

    __slots__ = ("_native", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        options = re2.Options()
        options.never_capture = True
        options.log_errors = False
        native = _re2.RE2(pattern.encode("utf-8"), options)
        if not native.ok():
            error = native.error()
            if isinstance(error, bytes):
                error = error.decode("utf-8", "replace")
            raise UnsafePatternError(f"invalid pattern: {error}")
        self._native = native

    def search(self, text: str) -> bool:
        data = text.encode("utf-8")
        return bool(self._native.Match(_UNANCHORED, data, 0, len(data))[0][0] != -1)

    def __repr__(self) -> str:
        return f"SafeRegex({self.pattern!r})"
