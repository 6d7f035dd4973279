"""Term lists (word boundaries, case folding, leetspeak) and safe regular expressions."""

from __future__ import annotations

import time

import pytest

from moderator.policy.cel.saferegex import SafeRegex, UnsafePatternError
from moderator.policy.terms import TermList, parse_term_file, text_forms

TERMS = TermList("t", ["kill", "free spins", "Café", "sh!t"])


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("I will KILL", True),
        ("k1ll", True),
        ("k!ll them", True),
        ("skill", False),  # word boundaries
        ("killer", False),
        ("FREE   spins!!", True),
        ("free\nspins", True),
        ("spins free", False),
        ("cafe", True),  # accents stripped
        ("\uff23\uff21\uff26\uff25", True),  # NFKC: full-width CAFE
        ("sh!t", True),
        ("shit", True),
        ("", False),
    ],
)
def test_matching(text: str, matches: bool) -> None:
    assert TERMS.matches(text) is matches


def test_counting_counts_occurrences() -> None:
    assert TERMS.count("kill kill free spins") == 3
    assert TERMS.count("nothing") == 0


def test_text_forms_skip_the_leet_pass_for_plain_text() -> None:
    assert text_forms("plain words").leet is None
    assert text_forms("l33t").leet == ("leet",)


def test_term_files_skip_comments_and_blanks() -> None:
    assert parse_term_file("# header\n\n  one \ntwo words\n") == ["one", "two words"]


def test_regex_is_linear_on_catastrophic_patterns() -> None:
    regex = SafeRegex("(a+)+b")
    started = time.perf_counter()
    assert not regex.search("a" * 10_000 + "c")
    assert time.perf_counter() - started < 0.5
    assert regex.search("xaab")


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)", "(?<!a)b", "[unclosed"])
def test_backreferences_lookarounds_and_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(UnsafePatternError):
        SafeRegex(pattern)
