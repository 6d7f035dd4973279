"""The evaluation context: the variables a rule's `when` expression can name.

=========  =========================  =============================================
variable   type                       holds
=========  =========================  =============================================
scores     map(string, double)        classifier score per category (``scores.hate``)
post       Post                       id, caption, lang, has_image, metadata, problems,
                                      image_unreadable, normalised_caption,
                                      caption_obfuscated
author     Author                     id and counters (posts_last_hour, ...)
signals    Signals                    every registered signal's outputs by name
                                      (``signals.ocr.text``, ``signals.md5.hash``)
=========  =========================  =============================================

Hash banks and term lists are reached through functions (`functions.py`).
Each entry also says how generated Python reads it from a `PolicyInput` bound
to ``P`` (``S`` = ``P.scores``, ``A`` = ``P.author``).
"""

from __future__ import annotations

from dataclasses import dataclass

from moderator.policy.cel.typesystem import (
    BOOL,
    DOUBLE,
    DYN,
    INT,
    STRING,
    CelType,
    list_of,
    map_of,
    object_type,
)
from moderator.signals import POLICY_SIGNAL_TYPES

POST = object_type("Post")
AUTHOR = object_type("Author")
SIGNALS = object_type("Signals")
SCORES = map_of(DOUBLE)
AUTHOR_FIELDS = ("posts_last_hour", "posts_last_day", "blocks_last_day", "strikes")
"""The author counters a rule may name; `inputs.AuthorCounters` holds them."""
_FIELD_TYPES = {"string": STRING, "double": DOUBLE, "int": INT, "bool": BOOL, "list": list_of(DYN)}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: CelType
    code: str
    doc: str


OBJECT_FIELDS: dict[str, dict[str, FieldSpec]] = {
    "Post": {
        "id": FieldSpec(STRING, "P.post_id", "the post id"),
        "caption": FieldSpec(STRING, "P.caption", "caption text, '' when none"),
        "lang": FieldSpec(STRING, "P.lang", "BCP 47 language tag, '' when unknown"),
        "has_image": FieldSpec(BOOL, "P.has_image", "whether the post carries an image"),
        "metadata": FieldSpec(map_of(DYN), "P.metadata", "the producer's free-form metadata"),
        "problems": FieldSpec(
            list_of(STRING),
            "P.problems",
            "reason codes of odd or unusable parts ('image_corrupt', 'caption_too_long', ...)",
        ),
        "image_unreadable": FieldSpec(
            BOOL, "P.image_unreadable", "carried an image that could not be read"
        ),
        "normalised_caption": FieldSpec(
            STRING,
            "P.normalised().text",
            "the caption as the model reads it: hidden characters removed, NFKC, look-alikes "
            "folded",
        ),
        "image_text": FieldSpec(
            STRING,
            "P.image_text",
            "text read from the image by OCR (normalised, capped); '' when none or OCR is off",
        ),
        "frames": FieldSpec(
            INT,
            "P.frames",
            "frames scored: animation frames, album images and video frames (1 for a still "
            "image, 0 for none); scores are pooled over them (limits.media.pooling)",
        ),
        "worst_frame": FieldSpec(
            INT, "P.worst_frame", "position of the highest-scoring frame, -1 when none"
        ),
        "caption_obfuscated": FieldSpec(
            BOOL,
            "P.normalised().obfuscated",
            "normalisation changed the caption's words (hidden characters inside words, "
            "look-alike letters): an obfuscation signal",
        ),
    },
    "Author": {
        "id": FieldSpec(STRING, "P.author_id", "the author id"),
        **{name: FieldSpec(INT, f"A.{name}", f"author counter {name}") for name in AUTHOR_FIELDS},
    },
    # One object type per signal, so an unknown signal or field fails at load with file:line.
    # A signal that is switched off or did not apply reads as its `empty` outputs.
    "Signals": {
        kind.name: FieldSpec(object_type(f"Signal.{kind.name}"), "P.signals", kind.__doc__ or "")
        for kind in POLICY_SIGNAL_TYPES
    },
    **{
        f"Signal.{kind.name}": {
            name: FieldSpec(_FIELD_TYPES[type_], f"P.signal({kind.name!r}, {name!r})", "")
            for name, type_ in kind.policy_fields().items()
        }
        for kind in POLICY_SIGNAL_TYPES
    },
}


@dataclass(frozen=True, slots=True)
class VariableSpec:
    type: CelType
    code: str
    origin: str


VARIABLES: dict[str, VariableSpec] = {
    "scores": VariableSpec(SCORES, "S", "scores"),
    "post": VariableSpec(POST, "P", "post"),
    "author": VariableSpec(AUTHOR, "A", "author"),
    "signals": VariableSpec(SIGNALS, "P.signals", "signals"),
}


LOCALS = {"S": "P.scores", "A": "P.author", "H": "P.hash_matches"}
"""What every generated function binds from its input ``P`` before the compiled code."""


def prologue() -> list[str]:
    """The lines binding `LOCALS`, indented for a function body."""
    return [f"    {name} = {source}" for name, source in LOCALS.items()]
