"""Review items: the copy of a `review` decision on the review topic is the decision record,
byte for byte, so it carries what a reviewer needs (scores, rules fired, image text, image
digest, the rules' explanations and notices).

The producer is `FakeProducer`, a fake behind kafka-python's `send` interface that records
what was sent and hands back already-completed futures; no broker is involved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka.consumer.fetcher import ConsumerRecord

from moderator.config import Settings
from moderator.ingest import DecodedPost
from moderator.policy import PolicyService, load_policy
from moderator.schema import Decision, Post
from moderator.serving import ScoreResponse
from tests.kafka_records import consumer_record
from workers.batch import Batch
from workers.decisions import ValidPost, make_decisions
from workers.moderation_worker import WorkerStats
from workers.offsets import OffsetTracker
from workers.outputs import Outputs

POLICY = """\
name: review
version: "1"
categories: [hate, violence]
rules:
  - id: hate.review
    description: Probable hate; a person decides.
    when: scores.hate >= 0.6
    action: review
    labels: [hate]
    notice: "Your post is waiting for a review ({labels})."
  - id: violence.label
    description: Some violence.
    when: scores.violence >= 0.4
    action: label
    labels: [violence]
"""
DIGEST = "ab" * 32


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, **_: Any) -> Any:
        self.sent.append((topic, key, value))
        return None  # the batch's futures are not awaited in this test


def _record(offset: int) -> ConsumerRecord:
    return consumer_record(offset, timestamp_ms=1_780_000_000_000)


def _post(index: int, image_text: str) -> ValidPost:
    ocr = {"text": image_text, "lines": 1, "confidence": 0.9, "truncated": False}
    decoded = DecodedPost(
        post=Post(
            post_id=f"p{index}", author_id="a", created_at=datetime.now(UTC), caption="a meme"
        ),
        pixels=None,
        image_sha256=DIGEST,
        signals={"sha256": {"hash": DIGEST}, "ocr": ocr},
    )
    return ValidPost(_record(index), decoded)


def test_review_items_are_the_decision_record_with_what_a_reviewer_needs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "review.yaml"
    path.write_text(POLICY)
    service = PolicyService(load_policy(path))
    valid = [_post(0, "nothing to see"), _post(1, "they are vermin")]
    scores = np.array([[0.1, 0.0], [0.7, 0.5]], dtype=np.float32)
    response = ScoreResponse(
        "m1",
        ["hate", "violence"],
        scores,
        new_image_embeddings=np.zeros((0, 4), np.float32),
        new_text_embeddings=np.zeros((0, 4), np.float32),
        image_encode_ms=0.0,
        text_encode_ms=0.0,
        score_ms=0.0,
    )
    decisions = make_decisions(valid, response, [[], []], service, {"decode": 1.0})
    settings = Settings()
    producer = FakeProducer()
    outputs = Outputs(settings, producer, OffsetTracker(), WorkerStats())  # type: ignore[arg-type]
    outputs.produce_decisions(Batch(records=[v.record for v in valid], valid=valid), decisions, 0.1)

    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
    for topic, key, value in producer.sent:
        by_topic.setdefault(topic, []).append((key, value))
    assert len(by_topic[settings.kafka.decisions_topic]) == 2
    [(key, review_value)] = by_topic[settings.kafka.review_topic]
    assert key == b"p1"
    assert (b"p1", review_value) in by_topic[settings.kafka.decisions_topic]

    item = Decision.model_validate_json(review_value)
    assert item.action == "review"
    assert item.scores == {"hate": 0.7, "violence": 0.5}
    assert item.rules_fired == ["hate.review", "violence.label"]
    assert item.image_text == "they are vermin"
    assert item.image_digest == DIGEST
    assert item.explanations == {
        "hate.review": "Probable hate; a person decides.",
        "violence.label": "Some violence.",
    }
    assert item.notices == ["Your post is waiting for a review (hate, violence)."]
    quiet = Decision.model_validate_json(by_topic[settings.kafka.decisions_topic][0][1])
    assert (quiet.action, quiet.explanations, quiet.notices) == ("allow", {}, [])
    assert orjson.loads(review_value)["signals"] == {
        "ocr": {"lines": 1, "confidence": 0.9, "truncated": False}
    }
