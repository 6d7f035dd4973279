"""Scores + policy → Decision records for one scored batch."""

from __future__ import annotations

from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord

from moderator.ingest import DecodedPost
from moderator.policy import PolicyService
from moderator.schema import Decision, SourceRef
from moderator.serving import ScoreResponse


@dataclass(slots=True)
class ValidPost:
    record: ConsumerRecord
    decoded: DecodedPost


def make_decisions(
    valid: list[ValidPost],
    response: ScoreResponse,
    cache_hits: list[list[str]],
    policy: PolicyService,
    timings_ms: dict[str, float],
) -> list[Decision]:
    """One validated Decision per valid post (pydantic-core validation is cheaper than
    pydantic's pure-Python model_construct here)."""
    decisions = []
    for row, item in enumerate(valid):
        scores = {
            c: round(float(s), 6)
            for c, s in zip(response.categories, response.scores[row], strict=True)
        }
        result = policy.decide_post(item.decoded, scores, item.record.timestamp)
        decisions.append(
            Decision(
                post_id=item.decoded.post.post_id,
                author_id=item.decoded.post.author_id,
                action=result.action,
                labels=result.labels,
                scores=scores,
                rules_fired=result.rules_fired,
                shadow_rules=result.shadow_rules,
                policy_version=result.policy_version,
                model_version=response.model_version,
                cache_hits=list(cache_hits[row]),
                timings_ms=dict(timings_ms),
                source=SourceRef(
                    topic=item.record.topic,
                    partition=item.record.partition,
                    offset=item.record.offset,
                    timestamp_ms=item.record.timestamp,
                ),
            )
        )
    return decisions
