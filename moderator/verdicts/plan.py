"""Pure part of the verdict consumer: record bytes → Verdict, and Verdict → the effects it asks for.

Nothing here touches Kafka, Redis or files, so the rules are unit-tested on their own:
which strike change a verdict makes, the corrected decision of an overturned appeal, and
the training row (or why there is none).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from moderator.schema import Action, Correction, Decision, Outcome, SourceRef, Verdict
from moderator.text.joint import model_text

MAX_VERDICT_BYTES = 1024 * 1024


class InvalidVerdictError(ValueError):
    """The record is not a valid Verdict; `detail` says why (it goes in the dead letter)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class StrikeChange(StrEnum):
    """What a verdict does to the author's strike for its post."""

    ADD = "add"
    REMOVE = "remove"


class RowResult(StrEnum):
    """What became of a verdict's training row (metric label values)."""

    WRITTEN = "written"
    NO_CONTENT = "no_content"
    NO_CATEGORY = "no_category"
    OFF = "off"


@dataclass(frozen=True)
class VerdictPlan:
    verdict: Verdict
    strike: StrikeChange
    # The corrected decision record (JSON-ready), for an appeal that overturns; else None.
    correction: dict[str, Any] | None
    training_row: dict[str, Any] | None
    row_result: RowResult

    def strike_write(self) -> tuple[str, str, float | None]:
        """(author, post, time of the strike), or time None to remove it: RedisAuthorStore.
        change_strikes' argument."""
        at = self.verdict.decided_at.timestamp() if self.strike is StrikeChange.ADD else None
        return self.verdict.author_id, self.verdict.post_id, at


def parse_verdict(value: bytes | None, key: bytes | None) -> Verdict:
    """A record's value (and key) → a Verdict, or InvalidVerdictError naming what is wrong."""
    if value is None:
        raise InvalidVerdictError("record has no value (tombstone)")
    if len(value) > MAX_VERDICT_BYTES:
        raise InvalidVerdictError(f"record is {len(value)} bytes; at most {MAX_VERDICT_BYTES}")
    try:
        verdict = Verdict.model_validate_json(value)
    except ValidationError as exc:
        # Field locations and messages only: the input (captions) is not echoed.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'record'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidVerdictError(f"not a valid verdict: {problems}") from exc
    if key is not None and key.decode("utf-8", "replace") != verdict.post_id:
        # Key = post_id keeps a post's verdicts in one partition, in order.
        raise InvalidVerdictError("the record key is not the verdict's post_id")
    return verdict


def strike_change(verdict: Verdict, strike_actions: Collection[Action]) -> StrikeChange:
    """The reviewer's action replaces the automated one: a strike iff it is a strike action.

    A confirmed violation with a strike action (block by default) adds the post's strike; any
    other verdict (an overturn, or a violation the reviewer only labelled) removes it, which
    does nothing when the post has none.
    """
    if verdict.outcome is Outcome.VIOLATION and verdict.action in strike_actions:
        return StrikeChange.ADD
    return StrikeChange.REMOVE


def corrected_decision(verdict: Verdict, source: SourceRef) -> dict[str, Any] | None:
    """The decision record that corrects an overturned appeal (None for any other verdict).

    A new record on the same post: action allow, no labels, the versions of the decision it
    corrects and a `correction` naming the verdict; decision records are never edited.
    """
    if verdict.appeal_id is None or not verdict.overturns:
        return None
    decision = Decision(
        post_id=verdict.post_id,
        author_id=verdict.author_id,
        action=Action.ALLOW,
        labels=[],
        scores={},
        policy_version=verdict.decision.policy_version,
        model_version=verdict.decision.model_version,
        correction=Correction(
            reason="appeal_overturned",
            verdict_id=verdict.verdict_id,
            appeal_id=verdict.appeal_id,
            corrected_action=verdict.decision.action,
        ),
        source=source,
    )
    return decision.model_dump(mode="json")


def training_row(verdict: Verdict) -> tuple[dict[str, Any] | None, RowResult]:
    """The labelled row `moderator train` reads (hateful-memes field names), or why none.

    `text` is the caption and image text joined as the classifier reads them; `img` is the
    image's sha256, a file name under `--image-root`; `label` lists the confirmed categories
    ([] for no violation: a negative for every category). A violation with no confirmed
    category gets no row: it would teach the model that a violating post is clean.
    """
    if verdict.outcome is Outcome.VIOLATION and not verdict.categories_confirmed:
        return None, RowResult.NO_CATEGORY
    text = model_text(verdict.caption or "", verdict.image_text or "")
    if not text and verdict.image_digest is None:
        return None, RowResult.NO_CONTENT
    labels = list(verdict.categories_confirmed) if verdict.outcome is Outcome.VIOLATION else []
    row = {
        "id": verdict.verdict_id,
        "post_id": verdict.post_id,
        "text": text,
        "img": verdict.image_digest,
        "label": labels,
        "categories_rejected": list(verdict.categories_rejected),
        "outcome": verdict.outcome.value,
        "action": verdict.action.value,
        "decision_action": verdict.decision.action.value,
        "model_version": verdict.decision.model_version,
        "policy_version": verdict.decision.policy_version,
        "decided_at": verdict.decided_at.isoformat(),
        "appeal_id": verdict.appeal_id,
    }
    return row, RowResult.WRITTEN


def plan_verdict(
    verdict: Verdict,
    source: SourceRef,
    strike_actions: Collection[Action],
    write_rows: bool,
) -> VerdictPlan:
    """Every effect one verdict asks for; the consumer carries them out."""
    row, result = training_row(verdict) if write_rows else (None, RowResult.OFF)
    return VerdictPlan(
        verdict=verdict,
        strike=strike_change(verdict, strike_actions),
        correction=corrected_decision(verdict, source),
        training_row=row,
        row_result=result,
    )


def row_line(row: dict[str, Any]) -> bytes:
    """One JSONL line."""
    return orjson.dumps(row) + b"\n"
