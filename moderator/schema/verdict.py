"""Verdict contract, version 1: what reviewers' tools put on the verdicts topic (key = post_id).

A verdict answers one decision record (post_id plus the model and policy versions that
made it). It says whether the post violates policy, which action and labels the reviewer
applied, and which of the categories the decision scored they confirmed or rejected. An
appeal is a verdict with an `appeal_id`: when it overturns an enforced decision, the
verdict consumer emits a corrected decision record (decision records are never edited).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moderator.schema.decision import Action
from moderator.schema.post import MAX_CAPTION_CHARS

VERDICT_SCHEMA_VERSION: Literal[1] = 1


class Outcome(StrEnum):
    """What the reviewer found."""

    VIOLATION = "violation"
    NO_VIOLATION = "no_violation"


class DecisionRef(BaseModel):
    """The decision record a verdict answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    post_id: str = Field(min_length=1, max_length=256)
    model_version: str = Field(min_length=1, max_length=256)
    policy_version: str = Field(min_length=1, max_length=256)
    action: Action = Field(description="The action the decision took.")


class Verdict(BaseModel):
    """One reviewer's verdict on one decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = VERDICT_SCHEMA_VERSION
    verdict_id: str = Field(
        min_length=1, max_length=256, description="Unique id; a re-delivered verdict counts once."
    )
    post_id: str = Field(min_length=1, max_length=256, description="Also the Kafka key.")
    author_id: str = Field(min_length=1, max_length=256)
    decision: DecisionRef
    outcome: Outcome
    action: Action = Field(
        description="The action the reviewer applied; allow when there is no violation."
    )
    labels: list[str] = Field(default_factory=list, description="Labels the reviewer applied.")
    categories_confirmed: list[str] = Field(
        default_factory=list, description="Categories of the decision the reviewer confirmed."
    )
    categories_rejected: list[str] = Field(
        default_factory=list, description="Categories of the decision the reviewer rejected."
    )
    reviewer_id: str = Field(min_length=1, max_length=256, description="Opaque reviewer id.")
    decided_at: datetime = Field(description="When the reviewer decided, RFC 3339.")
    appeal_id: str | None = Field(
        default=None, max_length=256, description="Set when the verdict answers an appeal."
    )
    # What the reviewer saw, copied from the post and the review item by the reviewer's tool:
    # the verdict consumer writes them into the training row (no image bytes, a digest only).
    caption: str | None = Field(
        default=None,
        max_length=MAX_CAPTION_CHARS,
        description="The post's caption, for the training row; null when the tool does not "
        "pass it on (the row then has only the image).",
    )
    image_text: str | None = Field(
        default=None,
        max_length=MAX_CAPTION_CHARS,
        description="The decision's image_text (text OCR read in the image), for the training row.",
    )
    image_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The decision's image_digest (sha256 of the image file, hex): the training "
        "row names the image by it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Verdict:
        if self.decision.post_id != self.post_id:
            raise ValueError("decision.post_id must equal post_id")
        if self.outcome is Outcome.NO_VIOLATION and self.action is not Action.ALLOW:
            raise ValueError("a no_violation verdict applies action allow")
        if self.outcome is Outcome.VIOLATION and self.action is Action.ALLOW:
            raise ValueError("a violation verdict applies an action other than allow")
        both = set(self.categories_confirmed) & set(self.categories_rejected)
        if both:
            raise ValueError(f"categories both confirmed and rejected: {sorted(both)}")
        return self

    @property
    def overturns(self) -> bool:
        """The reviewer found no violation where the decision acted (label, review or block)."""
        return self.outcome is Outcome.NO_VIOLATION and self.decision.action is not Action.ALLOW
