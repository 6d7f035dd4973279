"""Verdicts joined to the decisions they answer, and what a verdict says about each category.

A verdict answers one decision: the join key is (post_id, model_version, policy_version) of the
verdict's `decision` reference. Decisions are read as on the decisions topic (JSONL, one
`Decision` a line); a re-delivered decision is identical, so the first one read is kept, and a
correction record (an overturned appeal) is not a scoring and is left out. Verdicts are
de-duplicated by verdict_id; when one decision has several verdicts (a review, then an appeal)
the latest by `decided_at` is the one that counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from moderator.errors import ModeratorError
from moderator.schema.decision import Decision
from moderator.schema.verdict import Outcome, Verdict

JoinKey = tuple[str, str, str]
Progress = Callable[[int], None]
"""Called with the bytes read since the last call (for a progress bar)."""
PROGRESS_STEP = 1 << 20  # bytes between progress calls: a bar update per line costs more


class CalibrationError(ModeratorError):
    """Calibration inputs or options are unusable; the message names the file and line."""


class Judgement(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNJUDGED = "unjudged"


def judge(verdict: Verdict, category: str) -> Judgement:
    """What the reviewer said about `category`, in this order of precedence:

    1. listed in `categories_rejected` → negative;
    2. listed in `categories_confirmed` → positive;
    3. outcome `no_violation` → negative (nothing in the post violates policy);
    4. outcome `violation` and the category among the reviewer's `labels` → positive;
    5. otherwise (a violation of something else, this category not mentioned) → unjudged:
       the post is left out of this category's figures.
    """
    if category in verdict.categories_rejected:
        return Judgement.NEGATIVE
    if category in verdict.categories_confirmed:
        return Judgement.POSITIVE
    if verdict.outcome is Outcome.NO_VIOLATION:
        return Judgement.NEGATIVE
    if category in verdict.labels:
        return Judgement.POSITIVE
    return Judgement.UNJUDGED


@dataclass
class JoinedSet:
    """Reviewed decisions: each matched decision with the verdict that counts for it."""

    pairs: list[tuple[Decision, Verdict]] = field(default_factory=list)
    decisions_read: int = 0
    duplicate_decisions: int = 0
    """Re-deliveries of a reviewed decision (those of unreviewed ones are not told apart)."""
    corrections_skipped: int = 0
    verdicts_read: int = 0
    duplicate_verdicts: int = 0
    superseded_verdicts: int = 0
    """Older verdicts on a decision that a later one (an appeal) replaced."""
    unmatched_verdicts: int = 0
    """Verdicts whose decision (post_id + model and policy versions) is not in the decisions."""
    unmatched_examples: list[str] = field(default_factory=list)
    scored_categories: set[str] = field(default_factory=set)
    """Every category some decision has a score for."""

    @property
    def unreviewed_decisions(self) -> int:
        """Decision records no verdict answers (re-deliveries included)."""
        return (
            self.decisions_read
            - self.duplicate_decisions
            - self.corrections_skipped
            - len(self.pairs)
        )

    def summary(self) -> dict[str, int]:
        return {
            "decisions_read": self.decisions_read,
            "duplicate_decisions": self.duplicate_decisions,
            "corrections_skipped": self.corrections_skipped,
            "unreviewed_decisions": self.unreviewed_decisions,
            "verdicts_read": self.verdicts_read,
            "duplicate_verdicts": self.duplicate_verdicts,
            "superseded_verdicts": self.superseded_verdicts,
            "unmatched_verdicts": self.unmatched_verdicts,
            "reviewed_decisions": len(self.pairs),
        }


def jsonl_rows(path: Path, progress: Progress | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line; a missing file is a CalibrationError."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    unreported = 0
    with handle:
        for number, line in enumerate(handle, start=1):
            unreported += len(line)
            if progress is not None and unreported >= PROGRESS_STEP:
                progress(unreported)
                unreported = 0
            if line.strip():
                yield number, line
    if progress is not None and unreported:
        progress(unreported)


def _first_problem(exc: ValidationError) -> str:
    item = exc.errors()[0]
    where = ".".join(str(part) for part in item["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{item['msg']}{more}"


def read_decisions(
    path: Path,
    joined: JoinedSet,
    wanted: set[JoinKey] | None = None,
    progress: Progress | None = None,
) -> dict[JoinKey, Decision]:
    """Every line is validated; only the decisions in `wanted` (all when None) are kept, so a
    large decisions log costs memory only for its reviewed posts."""
    decisions: dict[JoinKey, Decision] = {}
    for number, line in jsonl_rows(path, progress):
        try:
            decision = Decision.model_validate_json(line)
        except ValidationError as exc:
            raise CalibrationError(
                f"{path}:{number}: not a decision record: {_first_problem(exc)}"
            ) from exc
        joined.decisions_read += 1
        joined.scored_categories.update(decision.scores)
        if decision.correction is not None:
            joined.corrections_skipped += 1
            continue
        key = (decision.post_id, decision.model_version, decision.policy_version)
        if wanted is not None and key not in wanted:
            continue
        if key in decisions:
            joined.duplicate_decisions += 1
            continue
        decisions[key] = decision
    return decisions


def read_verdicts(
    path: Path, joined: JoinedSet, progress: Progress | None = None
) -> dict[JoinKey, Verdict]:
    latest: dict[JoinKey, Verdict] = {}
    seen: set[str] = set()
    for number, line in jsonl_rows(path, progress):
        try:
            verdict = Verdict.model_validate_json(line)
        except ValidationError as exc:
            raise CalibrationError(
                f"{path}:{number}: not a verdict: {_first_problem(exc)}"
            ) from exc
        joined.verdicts_read += 1
        if verdict.verdict_id in seen:
            joined.duplicate_verdicts += 1
            continue
        seen.add(verdict.verdict_id)
        ref = verdict.decision
        key = (ref.post_id, ref.model_version, ref.policy_version)
        earlier = latest.get(key)
        if earlier is not None:
            joined.superseded_verdicts += 1
            if earlier.decided_at > verdict.decided_at:
                continue
        latest[key] = verdict
    return latest


def load_joined(
    verdicts: Path, decisions: Path, progress: Progress | None = None, examples: int = 5
) -> JoinedSet:
    """Read both files and join them; bad lines raise CalibrationError naming file:line."""
    joined = JoinedSet()
    by_verdict = read_verdicts(verdicts, joined, progress)
    by_key = read_decisions(decisions, joined, set(by_verdict), progress)
    for key, verdict in by_verdict.items():
        decision = by_key.get(key)
        if decision is None:
            joined.unmatched_verdicts += 1
            if len(joined.unmatched_examples) < examples:
                joined.unmatched_examples.append(" / ".join(key))
            continue
        joined.pairs.append((decision, verdict))
    return joined
