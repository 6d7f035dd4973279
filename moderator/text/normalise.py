"""Caption text as a reader sees it: what the model encodes and term lists match.

Evaders hide words from filters with characters a reader never sees (zero-width spaces,
bidi controls, soft hyphens), with compatibility forms (fullwidth or mathematical letters)
and with look-alike letters from other scripts. `normalise_text` undoes all of these:

1. a right-to-left override (U+202E) span is put in display order, since a reader sees it
   reversed ("\\u202ellik" reads "kill");
2. C0/C1 controls, bidi embeddings, overrides and isolates, and invisible format characters
   are removed (zero-width joiners and variation selectors only next to ASCII letters or
   digits: elsewhere they shape emoji and Indic or Persian words);
3. Unicode NFKC;
4. look-alike letters folded to ASCII where the word reads as Latin (`lookalikes.py`);
5. whitespace runs collapsed to one space, ends stripped.

Case is kept: the tokenizer decides about case. The original caption is never changed; the
problems found and whether the words changed (an obfuscation signal) travel beside it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from moderator.errors import ReasonCode
from moderator.text.lookalikes import fold_lookalikes

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI_OVERRIDES = re.compile("[\u202a-\u202e]")
_BIDI_ISOLATES = re.compile("[\u2066-\u2069]")
# Direction marks are normal in right-to-left text: removed without counting as a problem.
_BIDI_MARKS = re.compile("[\u200e\u200f\u061c]")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u2060-\u2064\u206a-\u206f"
    "\u2800\u3164\ufeff\uffa0\U0001d173-\U0001d17a]"
)
_JOINERS = "\u200c\u200d\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef"
_JOINER_BY_ASCII = re.compile(f"(?<=[A-Za-z0-9])[{_JOINERS}]+|[{_JOINERS}]+(?=[A-Za-z0-9])")
# A right-to-left override runs to its pop (U+202C) or the end of the line.
_RLO_SPAN = re.compile("\u202e([^\u202c\n]*)\u202c?")
CAPTION_CHAR_PROBLEMS = (
    ReasonCode.CAPTION_CONTROL_CHARS,
    ReasonCode.CAPTION_BIDI_OVERRIDE,
    ReasonCode.CAPTION_BIDI_ISOLATE,
    ReasonCode.CAPTION_INVISIBLE_CHARS,
)
_REMOVED: tuple[tuple[re.Pattern[str], ReasonCode | None], ...] = (
    (_CONTROLS, ReasonCode.CAPTION_CONTROL_CHARS),
    (_BIDI_OVERRIDES, ReasonCode.CAPTION_BIDI_OVERRIDE),
    (_BIDI_ISOLATES, ReasonCode.CAPTION_BIDI_ISOLATE),
    (_INVISIBLE, ReasonCode.CAPTION_INVISIBLE_CHARS),
    (_JOINER_BY_ASCII, ReasonCode.CAPTION_INVISIBLE_CHARS),
    (_BIDI_MARKS, None),
)
# One character class holding everything _REMOVED can remove: most captions have none, and
# one search over a class is several times cheaper than trying each pattern
# (tests/unit/test_text_normalise.py checks it covers them all).
_ANY_REMOVED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u2060-\u2064\u206a-\u206f"
    "\u2800\u3164\ufeff\uffa0\U0001d173-\U0001d17a"
    f"{_JOINERS}]"
)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class NormalisedText:
    text: str
    """What the model encodes and term lists match."""
    problems: tuple[ReasonCode, ...] = ()
    """Characters found and removed: caption_control_chars, caption_bidi_override,
    caption_bidi_isolate, caption_invisible_chars (in that order, each at most once)."""
    obfuscated: bool = False
    """Normalisation changed the words themselves (not only spacing or case): hidden
    characters inside words, look-alike or compatibility letters, reordered text."""


def normalise_text(text: str) -> NormalisedText:
    if text.isascii() and (text.isprintable() or _CONTROLS.search(text) is None):
        return NormalisedText(" ".join(text.split()))  # the common case
    # An override reorders what a reader sees even when its span holds no other control.
    found = {ReasonCode.CAPTION_BIDI_OVERRIDE} if "\u202e" in text else set()
    cleaned = _RLO_SPAN.sub(lambda m: m.group(1)[::-1], text) if found else text
    if found or _ANY_REMOVED.search(cleaned) is not None:
        for pattern, problem in _REMOVED:
            cleaned, count = pattern.subn("", cleaned)
            if count and problem is not None:
                found.add(problem)
    if not cleaned.isascii():
        cleaned = fold_lookalikes(unicodedata.normalize("NFKC", cleaned))
    result = " ".join(cleaned.split())  # str.split() splits on the whitespace \s matches
    problems = tuple(p for p in CAPTION_CHAR_PROBLEMS if p in found)
    if result == " ".join(text.split()):
        return NormalisedText(result, problems, False)  # only spacing changed, if anything
    words_before = _WORD.findall(unicodedata.normalize("NFC", text).casefold())
    return NormalisedText(result, problems, words_before != _WORD.findall(result.casefold()))
