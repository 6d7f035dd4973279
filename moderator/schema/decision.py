"""Decision contract, version 1: what workers put on the decisions topic (key = post_id)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DECISION_SCHEMA_VERSION: Literal[1] = 1


class Action(StrEnum):
    """What to do with a post. Severity order: allow < label < review < block."""

    ALLOW = "allow"
    LABEL = "label"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.LABEL: 1, Action.REVIEW: 2, Action.BLOCK: 3}


class SourceRef(BaseModel):
    """Where the post was read from, so a decision can be traced to its record."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int = Field(description="Kafka record timestamp of the post.")


class WorstFrame(BaseModel):
    """The frame of a multi-frame post (animation, album, video) that scored highest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="Position among the post's scored frames.")
    frames: int = Field(ge=2, description="How many frames of the post were scored.")
    source: str = Field(description="'image', 'images[2]' or 'video'.")
    position: int = Field(ge=0, description="Frame number within its source.")
    scores: dict[str, float] = Field(description="That frame's scores per category.")


class Correction(BaseModel):
    """Why this record replaces an earlier decision on the same post (records are never edited)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Literal["appeal_overturned"]
    verdict_id: str = Field(description="The verdict that overturned the earlier decision.")
    appeal_id: str | None = None
    corrected_action: Action = Field(description="The action of the decision being corrected.")


class Decision(BaseModel):
    """The outcome for one post.

    Same post + same model version + same policy version gives the same action,
    labels, scores and rules, so a re-delivered post yields an identical decision.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = DECISION_SCHEMA_VERSION
    post_id: str
    author_id: str
    action: Action
    labels: list[str] = Field(default_factory=list)
    scores: dict[str, float] = Field(description="Classifier score per category, 0..1.")
    rules_fired: list[str] = Field(default_factory=list)
    shadow_rules: list[str] = Field(
        default_factory=list, description="Shadow rules that would have fired; never enforced."
    )
    problems: list[str] = Field(
        default_factory=list,
        description="Reason codes of the post's odd or unusable parts (moderator.errors."
        "PROBLEM_REASONS: caption_too_long, image_corrupt, key_mismatch, ...); the decision "
        "was made from what could be read.",
    )
    policy_version: str
    model_version: str
    cache_hits: list[str] = Field(
        default_factory=list,
        description="Feature extractions served from the cache: image, text embeddings and "
        "signal outputs (ocr, image_safety).",
    )
    image_text: str = Field(
        default="",
        description="Text OCR read from the image, normalised, cut to 500 characters for "
        "reviewers ('' when none or OCR is off).",
    )
    image_text_changed: bool = Field(
        default=False,
        description="The policy's action or labels differ from what it decides with the image "
        "text left out (the model's scores, which may read that text too, are the same in both).",
    )
    signals: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Outputs of the worker's pool signals (ocr without its text, image_safety).",
    )
    image_digest: str | None = Field(
        default=None,
        description="sha256 of the image file (signals.sha256.hash): a link-free reference for "
        "reviewers; null without an image.",
    )
    explanations: dict[str, str] = Field(
        default_factory=dict,
        description="Rule id → the policy's description of it, for each live rule that fired.",
    )
    notices: list[str] = Field(
        default_factory=list,
        description="User-facing texts of the fired live rules' `notice:` (placeholders filled), "
        "for the platform to show the author.",
    )
    correction: Correction | None = Field(
        default=None,
        description="Set on a record that corrects an earlier decision (an overturned appeal).",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)
    source: SourceRef
    worst_frame: WorstFrame | None = Field(
        default=None,
        description="For a post scored on several frames: the highest-scoring one (`scores` "
        "then holds the frames' pooled scores, limits.media.pooling).",
    )
