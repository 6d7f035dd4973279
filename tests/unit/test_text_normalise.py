"""Caption normalisation: evaded words reach term lists and the classifier as plain words,
while text in other scripts, emoji and right-to-left marks are left as their writers meant."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from moderator.config import DecodeLimits
from moderator.errors import ReasonCode as R
from moderator.ingest import decode_post
from moderator.policy import PolicyService, load_policy
from moderator.policy.terms import TermList
from moderator.signals.embeddings import embedding_signals
from moderator.text import normalise_text
from workers.features import build_request

# The example and the look-alike spellings an evader reaches for.
EVASIONS = [
    "k\u200bi\u202el\u202cl",  # zero-width space, a one-letter right-to-left override
    "k\u0456ll",  # Cyrillic i
    "\u043a\u0456ll",  # Cyrillic ka and i
    "\uff4b\uff49\uff4c\uff4c",  # fullwidth
    "\U0001d424\U0001d422\U0001d425\U0001d425",  # mathematical bold
    "ki\u00adll",  # soft hyphen
    "k\u2060i\u2060l\u2060l",  # word joiners
    "\u202ellik\u202c",  # right-to-left override: stored "llik", read "kill"
    "K\u200dI\u200cL\u200dL",  # joiners between ASCII letters
    "k\u0131ll",  # dotless i
]


@pytest.mark.parametrize("evaded", EVASIONS)
def test_an_evaded_word_reads_as_the_plain_word(evaded: str) -> None:
    normalised = normalise_text(f"i will {evaded} you")
    assert normalised.text.lower() == "i will kill you"
    assert normalised.obfuscated


@pytest.mark.parametrize("evaded", EVASIONS)
def test_an_evaded_word_still_matches_the_term_list(evaded: str) -> None:
    threats = TermList("threats", ["kill you"])
    assert threats.matches(f"I will {evaded} you")
    assert threats.count(f"{evaded} you, {evaded} you") == 2


@pytest.mark.parametrize("evaded", EVASIONS)
def test_an_evaded_word_reaches_the_classifier_as_the_plain_word(evaded: str) -> None:
    def request_texts(caption: str) -> list[str]:
        value = orjson.dumps(
            {
                "post_id": "p",
                "author_id": "a",
                "created_at": "2026-11-30T00:00:00Z",
                "caption": caption,
            }
        )
        decoded = decode_post(value, DecodeLimits(), 32, key=b"p")
        built = build_request([decoded], None, embedding_signals("m", 8, 8, False), 32)
        return built.request.texts

    assert [t.lower() for t in request_texts(f"i will {evaded} you")] == ["i will kill you"]
    # The caption as written is kept; only the text read for the model changes.
    value = orjson.dumps(
        {"post_id": "p", "author_id": "a", "created_at": "2026-11-30T00:00:00Z", "caption": evaded}
    )
    assert decode_post(value, DecodeLimits(), 32).post.caption == evaded


@pytest.mark.parametrize(
    ("raw", "text", "problems"),
    [
        ("plain  ascii\ttext ", "plain ascii text", ()),
        ("a\x00b\x1b[0m", "ab[0m", (R.CAPTION_CONTROL_CHARS,)),
        ("\u2067@\u05d3\u05e0\u05d4\u2069 hi", "@\u05d3\u05e0\u05d4 hi", (R.CAPTION_BIDI_ISOLATE,)),
        ("abc\u202edcb", "abcbcd", (R.CAPTION_BIDI_OVERRIDE,)),
        ("x\u202ay\u202c", "xy", (R.CAPTION_BIDI_OVERRIDE,)),
        ("fr\u200bee", "free", (R.CAPTION_INVISIBLE_CHARS,)),
        (
            "a\x85\u200b\u202e",
            "a",
            (R.CAPTION_CONTROL_CHARS, R.CAPTION_BIDI_OVERRIDE, R.CAPTION_INVISIBLE_CHARS),
        ),
    ],
)
def test_problems_name_what_was_removed(raw: str, text: str, problems: tuple[R, ...]) -> None:
    normalised = normalise_text(raw)
    assert normalised.text == text
    assert normalised.problems == problems


@pytest.mark.parametrize(
    "text",
    [
        "\u043a\u043e\u0442 \u0438 \u043f\u0451\u0441",  # Russian: its letters stay Cyrillic
        "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1",  # Greek
        "\u0645\u06cc\u200c\u0634\u0648\u062f",  # Persian word with its zero-width non-joiner
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467",  # emoji ZWJ sequence
        "\u0645\u0631\u062d\u0628\u0627 \U0001f600 \u05e9\u05dc\u05d5\u05dd",
        "caf\u00e9 na\u00efve",
        "\u4f60\u597d\uff0c\u4e16\u754c",  # fullwidth comma: changed by NFKC, words are not
    ],
)
def test_other_scripts_and_emoji_are_not_obfuscation(text: str) -> None:
    normalised = normalise_text(text)
    assert not normalised.problems
    assert not normalised.obfuscated
    if "\uff0c" not in text:
        assert normalised.text == text


def test_normalisation_is_idempotent() -> None:
    for raw in [*EVASIONS, "\u2067x\u2069 \u043a\u043e\u0442", "a\u202ebc\u202c d"]:
        once = normalise_text(raw).text
        assert normalise_text(once).text == once


POLICY = """
name: signals
version: "1"
categories: [hate]
rules:
  - id: obfuscated
    when: post.caption_obfuscated && post.normalised_caption.contains("kill")
    action: review
  - id: reordered
    when: '"caption_bidi_override" in post.problems'
    action: label
  - id: unreadable
    when: post.image_unreadable
    action: block
"""


def test_policies_see_problems_and_the_obfuscation_signal(tmp_path: Path) -> None:
    (tmp_path / "signals.yaml").write_text(POLICY)
    service = PolicyService(load_policy(tmp_path / "signals.yaml"))
    value = orjson.dumps(
        {
            "post_id": "p",
            "author_id": "a",
            "created_at": "2026-11-30T00:00:00Z",
            "caption": "i will k\u200bi\u202el\u202cl you",
        }
    )
    decoded = decode_post(value, DecodeLimits(), 32)
    result = service.decide_post(decoded, {"hate": 0.0}, 1_780_000_000_000)
    assert sorted(result.rules_fired) == ["obfuscated", "reordered"]
    with_bad_image = orjson.loads(value) | {"image_b64": "aGk=", "caption": "hello"}
    decoded = decode_post(orjson.dumps(with_bad_image), DecodeLimits(), 32)
    assert decoded.pixels is None and decoded.image_unreadable
    assert service.decide_post(decoded, {"hate": 0.0}, None).rules_fired == ["unreadable"]


def test_the_quick_check_covers_every_character_normalisation_removes() -> None:
    from moderator.text import normalise as n

    planes = [*range(0x0, 0x3000), *range(0xFE00, 0x10000), *range(0x1D100, 0x1D200)]
    planes += [*range(0xE0000, 0xE0200)]
    for code in planes:
        text = f"a{chr(code)}a"
        removed = any(pattern.search(text) for pattern, _ in n._REMOVED)
        assert not removed or n._ANY_REMOVED.search(text), hex(code)
