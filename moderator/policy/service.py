"""What a worker holds: the current policy plus the state it reads, per decoded post.

`PolicyService.decide_post` builds the `PolicyInput` of one decoded post
(caption, language, metadata, hash-bank matches of its image, the author's
counters), decides it with the current policy (a hot-reloading
`PolicyWatcher` or a fixed policy), records the outcome in the author store
and counts rule hits. Image hashes are computed only for the kinds of bank the
policy has, and author counters are read only when a rule uses them.

PDQ is computed from the decoded image the worker already holds: the
classifier's resized RGB array (224x224 for the starter model), not the
original file. PDQ downsamples to 64x64 internally, so the hash of the resized
image stays within a few bits of the original's (2-6 bits on the test
patterns, far below the default threshold of 31); see docs/policy.md.

With a `FloodQuarantine` (moderator.policy.quarantine), `begin_batch` takes the rules it
quarantines before each batch and those rules' fires are decided as shadow
(`CompiledPolicy.demote`); every decided post's live rules are counted for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from moderator import metrics
from moderator.policy.authors import RedisAuthorStore
from moderator.policy.engine import CompiledPolicy, PolicyResult
from moderator.policy.inputs import NO_HISTORY, PolicyInput
from moderator.policy.quarantine import FloodQuarantine
from moderator.text import NormalisedText


class PolicySource(Protocol):
    def current(self) -> CompiledPolicy: ...


class FixedPolicy:
    """A policy source that never changes."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self._policy = policy

    def current(self) -> CompiledPolicy:
        return self._policy


class DecodedPostLike(Protocol):
    """`moderator.ingest.DecodedPost`: the post, its resized pixels and image digest."""

    @property
    def post(self) -> Any: ...

    @property
    def pixels(self) -> Any: ...

    @property
    def image_sha256(self) -> str | None: ...

    @property
    def problems(self) -> Mapping[Any, str]: ...

    @property
    def caption_text(self) -> NormalisedText: ...

    @property
    def signals(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def image_text(self) -> str: ...


class PolicyService:
    def __init__(
        self,
        source: CompiledPolicy | PolicySource,
        authors: RedisAuthorStore | None = None,
        quarantine: FloodQuarantine | None = None,
    ) -> None:
        self.source: PolicySource = (
            FixedPolicy(source) if isinstance(source, CompiledPolicy) else source
        )
        self.authors = authors
        self.quarantine = quarantine
        self._hits: dict[tuple[str, str], Any] = {}
        self._demoted: frozenset[str] = frozenset()

    @classmethod
    def wrap(cls, policy: CompiledPolicy | PolicySource | PolicyService) -> PolicyService:
        return policy if isinstance(policy, PolicyService) else cls(policy)

    @property
    def policy(self) -> CompiledPolicy:
        return self.source.current()

    @property
    def qualified_version(self) -> str:
        return self.source.current().qualified_version

    def check_categories(
        self, model_categories: Sequence[str], semantic_banks: Sequence[str] | None = None
    ) -> None:
        """The policy (and, when it reloads, every new one) must only name categories the model
        scores and semantic banks the replica serves."""
        require = getattr(self.source, "require_categories", None)
        if require is not None:
            require(model_categories, semantic_banks)
        else:
            self.source.current().check_categories(model_categories, semantic_banks)

    def begin_batch(self) -> None:
        """Before deciding a batch: take the rules flood quarantine demotes for it (a Redis
        round trip when its check is due)."""
        if self.quarantine is not None:
            self._demoted = self.quarantine.begin_batch(self.source.current())

    def decide(self, scores: Mapping[str, float] | PolicyInput) -> PolicyResult:
        return self._finish(self.source.current(), scores, None, None)

    def decide_post(
        self,
        decoded: DecodedPostLike,
        scores: Mapping[str, float],
        timestamp_ms: int | None = None,
    ) -> PolicyResult:
        """Decide one decoded post; `timestamp_ms` (the Kafka record's) is the decision time,
        so a re-delivered post is decided at the same instant."""
        policy = self.source.current()
        post = decoded.post
        now = (
            timestamp_ms / 1000.0 if timestamp_ms is not None and timestamp_ms >= 0 else time.time()
        )
        hash_matches: dict[str, int] = {}
        if policy.banks and (decoded.pixels is not None or decoded.image_sha256 is not None):
            # The digests were computed once, while decoding, from the bytes as received
            # (inline or fetched from image_url alike).
            hash_matches = policy.banks.match(policy.banks.signals(decoded.signals, decoded.pixels))
        author = NO_HISTORY
        if self.authors is not None and policy.uses_author:
            author = self.authors.counters(post.author_id, now)
        data = PolicyInput.from_post(
            post,
            scores,
            author=author,
            hash_matches=hash_matches,
            now=now,
            problems=tuple(str(problem) for problem in decoded.problems),
            text=decoded.caption_text,
            image_text=decoded.image_text,
            signals=decoded.signals,
        )
        demoted = self._demoted
        result = policy.decide(data, now)
        if demoted:
            result = policy.demote(result, demoted)
        if data.image_text and policy.reads_image_text:
            # What reading the image changed: decided again without its text (cheap: the
            # compiled rules only; the model's scores, which may have read it too, stay).
            without = policy.decide(_without_image_text(data), now)
            if demoted:
                without = policy.demote(without, demoted)
            if (without.action, without.labels) != (result.action, result.labels):
                result = replace(result, image_text_changed=True)
        return self._record(result, now, post)

    def _finish(
        self,
        policy: CompiledPolicy,
        data: Mapping[str, float] | PolicyInput,
        now: float | None,
        post: Any,
    ) -> PolicyResult:
        result = policy.decide(data, now)
        if self._demoted:
            result = policy.demote(result, self._demoted)
        return self._record(result, now, post)

    def _record(self, result: PolicyResult, now: float | None, post: Any) -> PolicyResult:
        if self.authors is not None and post is not None and now is not None:
            self.authors.record(post.author_id, post.post_id, now, result.action)
        if self.quarantine is not None:
            self.quarantine.count(result.rules_fired)
        for rule_id in result.rules_fired:
            self._hit(rule_id, "live").inc()
        for rule_id in result.shadow_rules:
            self._hit(rule_id, "shadow").inc()
        for rule_id in result.errors:
            metrics.RULE_ERRORS.labels(rule=rule_id).inc()
        return result

    def _hit(self, rule_id: str, mode: str) -> Any:
        child = self._hits.get((rule_id, mode))
        if child is None:
            child = self._hits[(rule_id, mode)] = metrics.RULE_HITS.labels(rule=rule_id, mode=mode)
        return child

    def close(self) -> None:
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()
        if self.authors is not None:
            self.authors.close()
        if self.quarantine is not None:
            self.quarantine.close()


def _without_image_text(data: PolicyInput) -> PolicyInput:
    signals = {name: outputs for name, outputs in data.signals.items() if name != "ocr"}
    return replace(data, image_text="", signals=signals)
