"""The policy file format (YAML), as pydantic models.

```yaml
name: default                 # decisions record name@version
version: "2"
categories: [hate, violence]  # the classifier categories rules may read
defaults: {action: allow, mode: live, priority: 0}
term_lists:
  threats: {file: terms/threats.txt}          # or {terms: [...]}
hash_banks:
  known_bad: {kind: pdq, file: banks/known_bad.pdq.txt, threshold: 31, quality_floor: 50}
semantic_banks:               # served by the Classifier replica (docs/retrieval.md)
  known_hateful_memes: {description: "HarMeme-style known-bad memes"}
rules:
  - id: hate.block
    when: scores.hate >= 0.9
    action: block             # allow < label < review < block
    labels: [hate]
    priority: 0               # the highest priority that fired decides
    mode: live                # live | shadow | disabled
    expires: 2026-12-31       # optional; the rule stops running at that instant (UTC)
    notice: "Your post was hidden because it was labelled {labels}."   # optional, for the author
```
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moderator.schema.decision import Action

RULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_EXPRESSION_CHARS = 4000
MAX_NOTICE_CHARS = 1000
NOTICE_PLACEHOLDERS = ("action", "labels", "categories")
"""What a rule's `notice:` may name, as ``{name}``: the decision's action, its labels, and the
classifier categories among its labels (each list comma-separated)."""


def check_notice(text: str) -> str:
    """Refuse a notice that str.format could not fill from NOTICE_PLACEHOLDERS alone: an unknown
    name, a positional ``{}``, attribute or index access, a conversion or a format spec (a
    spec such as ``{labels:>99999}`` would let a policy inflate every record)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"notice is not a valid template ({exc}); write {{{{ for a brace") from exc
    allowed = ", ".join("{" + name + "}" for name in NOTICE_PLACEHOLDERS)
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if "." in name or "[" in name:
            raise ValueError(f"placeholder {{{name}}}: no attribute or index access; use {allowed}")
        if name not in NOTICE_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} in notice; use {allowed}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
    return text


class RuleMode(StrEnum):
    LIVE = "live"
    SHADOW = "shadow"
    """Evaluated and recorded in the decision's shadow_rules; never changes the action."""
    DISABLED = "disabled"
    """Checked at load, never evaluated."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    action: Action = Field(default=Action.ALLOW, description="The action when no live rule fires.")
    mode: RuleMode = RuleMode.LIVE
    priority: int = 0


class RuleSpec(_Strict):
    id: str = Field(pattern=RULE_ID_PATTERN, max_length=128)
    description: str = ""
    when: str = Field(min_length=1, max_length=MAX_EXPRESSION_CHARS)
    action: Action
    labels: list[str] = Field(default_factory=list)
    priority: int | None = None
    mode: RuleMode | None = None
    expires: datetime | date | None = Field(
        default=None, description="The rule stops running at this instant (a date: 00:00 UTC)."
    )
    notice: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NOTICE_CHARS,
        description="Text for the author when this rule decides; placeholders "
        "{action}, {labels}, {categories}.",
    )

    @field_validator("notice")
    @classmethod
    def _notice_placeholders(cls, value: str | None) -> str | None:
        return None if value is None else check_notice(value)

    def expires_at(self) -> float | None:
        """Epoch seconds, or None."""
        if self.expires is None:
            return None
        moment = self.expires
        if not isinstance(moment, datetime):
            moment = datetime.combine(moment, time(0, 0), tzinfo=UTC)
        elif moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


class TermListSpec(_Strict):
    file: str | None = Field(
        default=None,
        description="One term per line, # comments; relative "
        "paths are relative to the policy file.",
    )
    terms: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_terms(self) -> TermListSpec:
        if self.file is None and not self.terms:
            raise ValueError("give file or terms")
        return self


class HashBankSpec(_Strict):
    kind: Literal["pdq", "md5", "sha256"]
    file: str = Field(description="A hash list; relative paths are relative to the policy file.")
    threshold: int = Field(
        default=31, ge=0, le=128, description="PDQ: match at Hamming distance <= threshold."
    )
    quality_floor: int = Field(
        default=50, ge=0, le=100, description="PDQ: images hashed below this quality never match."
    )


class SemanticBankSpec(_Strict):
    """A semantic bank the rules read with semantic_match(name): the replica loads it
    (serving.classifier.semantic.banks); declaring it here makes any other name a load error."""

    description: str = ""


class PolicyDocument(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    version: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    description: str = ""
    categories: list[str] = Field(min_length=1)
    defaults: Defaults = Field(default_factory=Defaults)
    term_lists: dict[str, TermListSpec] = Field(default_factory=dict)
    hash_banks: dict[str, HashBankSpec] = Field(default_factory=dict)
    semantic_banks: dict[str, SemanticBankSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
