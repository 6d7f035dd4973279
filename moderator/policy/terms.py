"""Term lists: whole-word matching with case folding and leetspeak normalisation.

Text and terms go through the same normalisation: the model's (moderator.text:
invisible and bidi-control characters removed, NFKC, look-alike letters folded,
so "k" ZWSP "i" RLO "l" PDF "l" and "kill" with a Cyrillic i read "kill"), accents
stripped, case folded, then split into word tokens. Each text is matched twice,
as written and with leetspeak undone (``k1ll`` → ``kill``, ``$hit`` → ``shit``),
so a list matches whether or not a post disguises its words. Matching is by
whole tokens (word boundaries); a multi-word term matches consecutive tokens.
Lookups are set operations, so a list of thousands of terms costs the same as
a list of ten.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from moderator.text import normalise_text

_WORD = re.compile(r"\w+")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
        "€": "e",
    }
)
_LEET_CHARS = frozenset("013457 8@$!|+€".replace(" ", ""))

Tokens = tuple[str, ...]


def fold(text: str, *, normalised: bool = False) -> str:
    """Normalised as the model reads it (moderator.text: hidden characters removed, NFKC,
    look-alikes folded; skipped when `normalised` says it is already), accents stripped,
    case folded."""
    if not normalised:
        text = normalise_text(text).text
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", _COMBINING.sub("", decomposed)).casefold()


@dataclass(frozen=True, slots=True)
class TextForms:
    """The token sequences a text is matched as: as written, and with leetspeak undone."""

    plain: Tokens
    leet: Tokens | None
    """None when the text has no leetspeak characters (then it equals `plain`)."""
    plain_set: frozenset[str] = frozenset()
    leet_set: frozenset[str] = frozenset()


def text_forms(text: str, *, normalised: bool = False) -> TextForms:
    folded = fold(text, normalised=normalised)
    plain = tuple(_WORD.findall(folded))
    if _LEET_CHARS.isdisjoint(folded):
        return TextForms(plain, None, frozenset(plain))
    leet = tuple(_WORD.findall(folded.translate(_LEET)))
    return TextForms(plain, leet, frozenset(plain), frozenset(leet))


@dataclass(frozen=True, slots=True)
class _TermSet:
    words: frozenset[str]
    phrases: dict[str, tuple[Tokens, ...]] = field(default_factory=dict)
    """First token → the multi-token terms starting with it."""
    firsts: frozenset[str] = frozenset()

    def count(self, tokens: Tokens, present: frozenset[str], stop_at_first: bool) -> int:
        """Occurrences in `tokens`; `present` is the same tokens as a set (for a quick no)."""
        if self.words.isdisjoint(present) and self.firsts.isdisjoint(present):
            return 0
        found = 0
        words, phrases = self.words, self.phrases
        for index, token in enumerate(tokens):
            if token in words or (
                token in phrases
                and any(tokens[index : index + len(p)] == p for p in phrases[token])
            ):
                found += 1
                if stop_at_first:
                    return found
        return found

    def any_in(self, tokens: Tokens, present: frozenset[str]) -> bool:
        if not self.words.isdisjoint(present):
            return True
        if self.firsts.isdisjoint(present):
            return False
        return self.count(tokens, present, stop_at_first=True) > 0


def _term_set(terms: Iterable[Tokens]) -> _TermSet:
    words: set[str] = set()
    phrases: dict[str, list[Tokens]] = {}
    for tokens in terms:
        if len(tokens) == 1:
            words.add(tokens[0])
        elif tokens:
            phrases.setdefault(tokens[0], []).append(tokens)
    return _TermSet(frozenset(words), {k: tuple(v) for k, v in phrases.items()}, frozenset(phrases))


class TermList:
    """A named list of words and phrases, normalised once at load."""

    def __init__(self, name: str, terms: Sequence[str]) -> None:
        self.name = name
        forms = [text_forms(term) for term in terms]
        self.size = len({f.plain for f in forms if f.plain})
        self._plain = _term_set(f.plain for f in forms)
        self._leet = _term_set(f.leet if f.leet is not None else f.plain for f in forms)
        self._leet_differs = any(f.leet is not None for f in forms)
        """Some term is written in leetspeak: plain text must be tried against its undone form."""

    def __repr__(self) -> str:
        return f"TermList({self.name!r}, {self.size} terms)"

    def matches_forms(self, forms: TextForms) -> bool:
        if self._plain.any_in(forms.plain, forms.plain_set):
            return True
        if forms.leet is not None:
            return self._leet.any_in(forms.leet, forms.leet_set)
        return self._leet_differs and self._leet.any_in(forms.plain, forms.plain_set)

    def count_forms(self, forms: TextForms) -> int:
        plain = self._plain.count(forms.plain, forms.plain_set, stop_at_first=False)
        if forms.leet is None:
            if not self._leet_differs:
                return plain
            leet = self._leet.count(forms.plain, forms.plain_set, stop_at_first=False)
        else:
            leet = self._leet.count(forms.leet, forms.leet_set, stop_at_first=False)
        return max(plain, leet)

    def matches(self, text: str) -> bool:
        return self.matches_forms(text_forms(text))

    def count(self, text: str) -> int:
        return self.count_forms(text_forms(text))


def parse_term_file(text: str) -> list[str]:
    """One term per line; blank lines and lines starting with ``#`` are skipped."""
    terms = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            terms.append(stripped)
    return terms
