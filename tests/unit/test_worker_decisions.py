"""Decision records as the worker builds them (plain dicts, no pydantic on the hot path)
validate as the Decision contract and carry every field it has."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
from kafka.consumer.fetcher import ConsumerRecord

from moderator.ingest import DecodedPost
from moderator.policy import PolicyService, load_policy
from moderator.schema import Action, Decision, Post
from moderator.serving import ScoreResponse
from tests.kafka_records import consumer_record
from tests.paths import DEFAULT_POLICY
from workers.decisions import ValidPost, make_decisions


def _record(offset: int) -> ConsumerRecord:
    return consumer_record(offset, partition=2)


def test_constructed_decisions_validate_and_serialise_like_validated_ones() -> None:
    policy = PolicyService(load_policy(DEFAULT_POLICY))
    categories = list(policy.policy.categories)
    posts = [
        ValidPost(
            _record(i),
            DecodedPost(
                post=Post(
                    post_id=f"p{i}", author_id="a", created_at=datetime.now(UTC), caption=caption
                ),
                pixels=None,
                image_sha256=None,
            ),
        )
        for i, caption in enumerate(["nice day", "I will kill you"])
    ]
    scores = np.zeros((2, len(categories)), dtype=np.float32)
    scores[1, categories.index("violence")] = 0.97
    response = ScoreResponse(
        "m1",
        categories,
        scores,
        new_image_embeddings=np.zeros((0, 4), np.float32),
        new_text_embeddings=np.zeros((0, 4), np.float32),
        image_encode_ms=1.0,
        text_encode_ms=0.5,
        score_ms=2.0,
    )
    decisions = make_decisions(posts, response, [[], ["image", "text"]], policy, {"decode": 1.0})
    for record in decisions:
        assert list(record) == list(Decision.model_fields)  # no field missing, same order
        wire = orjson.dumps(record)
        validated = Decision.model_validate_json(wire)
        assert orjson.loads(validated.model_dump_json()) == orjson.loads(wire)
    first, second = (Decision.model_validate(d) for d in decisions)
    assert first.action is Action.ALLOW
    assert second.action.severity > first.action.severity
    assert second.source.partition == 2 and second.source.offset == 1
    assert (first.cache_hits, second.cache_hits) == ([], ["image", "text"])
    assert second.scores["violence"] == 0.97  # float32 0.97 rounded to 6 places
    assert first.timings_ms == {"decode": 1.0}
