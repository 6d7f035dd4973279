"""Read decisions and dead letters back from Kafka until every sample is accounted for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer

from moderator.config import KafkaSettings
from moderator.io import create_consumer
from moderator.schema import DeadLetter


@dataclass
class Collected:
    decisions: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # post_id → decision (last seen)
    decision_records: int = 0
    decision_timestamps_ms: dict[str, int] = field(default_factory=dict)
    dead_letters: list[tuple[DeadLetter, bytes | None]] = field(
        default_factory=list
    )  # (headers, key)
    first_decision_at: float | None = None  # wall clock, seconds


def reader(kafka: KafkaSettings, topics: list[str]) -> KafkaConsumer:
    """A throwaway group reading `topics` from the start."""
    consumer = create_consumer(kafka, group_id=f"moderator-reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe(topics)
    return consumer


def collect(
    kafka: KafkaSettings,
    expected_decisions: int,
    expected_dead_letters: int,
    timeout_s: float,
    on_progress: Callable[[int], None] | None = None,
    still_running: Callable[[], bool] = lambda: True,
    out: Collected | None = None,
) -> Collected:
    """Read until the expected counts are reached; pass `out` to watch progress meanwhile."""
    out = out if out is not None else Collected()
    consumer = reader(kafka, [kafka.decisions_topic, kafka.dlq_topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and still_running():
            done = len(out.decisions) + len(out.dead_letters)
            if (
                len(out.decisions) >= expected_decisions
                and len(out.dead_letters) >= expected_dead_letters
            ):
                break
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    if record.topic == kafka.dlq_topic:
                        out.dead_letters.append(
                            (DeadLetter.from_headers(list(record.headers)), record.key)
                        )
                        continue
                    decision = orjson.loads(record.value)
                    out.decision_records += 1
                    out.decisions[decision["post_id"]] = decision
                    out.decision_timestamps_ms[decision["post_id"]] = record.timestamp
                    if out.first_decision_at is None:
                        out.first_decision_at = time.time()
            if on_progress is not None:
                on_progress(len(out.decisions) + len(out.dead_letters) - done)
    finally:
        consumer.close(autocommit=False)
    return out
