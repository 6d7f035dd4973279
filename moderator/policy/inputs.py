"""What a policy sees about one post: `PolicyInput`.

The worker builds one per decoded post from the classifier scores, the post's
own fields and problems, the author's counters (Redis) and the hash-bank
matches of its image. Building it is a handful of attribute copies: the
caption's normalised text (the decoder's, when it has one) and word tokens,
needed by term lists, are computed lazily and at most once per post.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from moderator.errors import UNREADABLE_IMAGE_PROBLEMS
from moderator.policy.terms import TextForms, text_forms
from moderator.signals import POLICY_SIGNAL_TYPES
from moderator.text import NormalisedText, normalise_text

_EMPTY: Mapping[str, Any] = MappingProxyType({})
SEMANTIC_SIGNAL = "semantic_banks"
"""The `signals` entry the worker fills from the replica's answer: bank → {similarity,
nearest} (moderator.retrieval); rules read it with semantic_match(bank)."""
EMPTY_SIGNALS = {kind.name: kind.empty for kind in POLICY_SIGNAL_TYPES}


@dataclass(frozen=True, slots=True)
class AuthorCounters:
    """The author's recent history, read before the decision (the post itself not counted)."""

    posts_last_hour: int = 0
    posts_last_day: int = 0
    blocks_last_day: int = 0
    strikes: int = 0
    """Active strikes: blocks within the strike expiry window."""


NO_HISTORY = AuthorCounters()


@dataclass(slots=True, eq=False)
class PolicyInput:
    """Everything a rule can read about one post."""

    scores: Mapping[str, float]
    """Classifier score per category, 0..1; a category the policy names but the input
    lacks reads as 0.0."""
    post_id: str = ""
    author_id: str = ""
    caption: str = ""
    lang: str = ""
    has_image: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    author: AuthorCounters = NO_HISTORY
    hash_matches: Mapping[str, int] = field(default_factory=dict)
    """Bank name → Hamming distance of the nearest match (0 for exact banks)."""
    now: float | None = None
    """Evaluation time, epoch seconds (rule expiry); None means the wall clock."""
    problems: tuple[str, ...] = ()
    """Reason codes of the post's odd or unusable parts (the decision's `problems`)."""
    text: NormalisedText | None = None
    """The caption as the model reads it; None → normalised from `caption` on first use."""
    image_text: str = ""
    """Text read from the image by OCR (normalised); '' when none or OCR is off."""
    signals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Signal name → its outputs (moderator.signals): digests, OCR, image safety."""
    _caption_forms: TextForms | None = field(default=None, init=False, repr=False)

    def signal(self, name: str, field: str) -> Any:
        """One output of a signal; a signal that did not run reads as its empty outputs."""
        outputs = self.signals.get(name)
        if outputs is None:
            return EMPTY_SIGNALS[name][field]
        return outputs[field]

    def semantic_match(self, bank: str) -> float:
        """Best similarity of the post to the semantic bank; 0.0 when nothing was compared."""
        match = self.signals.get(SEMANTIC_SIGNAL, _EMPTY).get(bank)
        return float(match["similarity"]) if match else 0.0

    def semantic_matches(self) -> dict[str, float]:
        outputs = self.signals.get(SEMANTIC_SIGNAL, _EMPTY)
        return {bank: float(match["similarity"]) for bank, match in outputs.items()}

    def normalised(self) -> NormalisedText:
        text = self.text
        if text is None:
            text = self.text = normalise_text(self.caption)
        return text

    @property
    def image_unreadable(self) -> bool:
        """The post carried an image and none could be read (scores come from the caption)."""
        return not UNREADABLE_IMAGE_PROBLEMS.isdisjoint(self.problems)

    @property
    def frames(self) -> int:
        """Frames scored (animation frames, album images, video frames); 1 for a post with
        one readable still image, 0 for none. Set by the worker from the decoded media."""
        media = self.signals.get("media")
        if media is not None:
            return int(media["frames"])
        hashes = self.signals.get("frame_hashes")  # one frame of an album or a video
        if hashes is not None:
            return len(hashes["frames"])
        return int(self.has_image and not self.image_unreadable)

    @property
    def worst_frame(self) -> int:
        """Position of the highest-scoring frame among `frames`; 0 for one, -1 for none."""
        media = self.signals.get("media")
        if media is not None:
            return int(media["worst_frame"])
        return 0 if self.frames else -1

    def caption_forms(self) -> TextForms:
        forms = self._caption_forms
        if forms is None:
            forms = self._caption_forms = text_forms(self.normalised().text, normalised=True)
        return forms

    @classmethod
    def from_post(
        cls,
        post: Any,
        scores: Mapping[str, float],
        *,
        author: AuthorCounters = NO_HISTORY,
        hash_matches: Mapping[str, int] = _EMPTY,
        now: float | None = None,
        problems: tuple[str, ...] = (),
        text: NormalisedText | None = None,
        image_text: str = "",
        signals: Mapping[str, Mapping[str, Any]] = _EMPTY,
    ) -> PolicyInput:
        """From a `moderator.schema.Post` (or anything with the same attributes)."""
        return cls(
            scores=scores,
            post_id=post.post_id,
            author_id=post.author_id,
            caption=post.caption,
            lang=post.lang or "",
            has_image=post.image_b64 is not None or post.image_url is not None,
            metadata=post.metadata,
            author=author,
            hash_matches=hash_matches,
            now=now,
            problems=problems,
            text=text,
            image_text=image_text,
            signals=signals,
        )
