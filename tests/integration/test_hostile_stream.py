"""The hostile corpus through a real worker and broker: each record is dead-lettered with its
reason or decided, and the partitions keep moving past every one of them."""

from __future__ import annotations

import orjson
import pytest

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.demo.stack import create_topics
from moderator.io import create_producer
from tests.hostile_corpus import hostile_cases
from tests.integration.test_worker_delivery import KeywordScorer, _start_worker, committed_offsets

pytestmark = pytest.mark.integration


def test_hostile_records_are_dead_lettered_with_their_reason(isolated_settings: Settings) -> None:
    settings = isolated_settings
    create_topics(settings)
    producer = create_producer(settings.kafka)
    expected_dlq, expected_decided, ends = {}, set(), {}
    futures = []
    for i, case in enumerate(hostile_cases()):
        key = f"case-{i}"
        value = case.value
        if case.reason is None:
            value = orjson.dumps({**orjson.loads(value), "post_id": key})
            expected_decided.add(key)
        else:
            expected_dlq[key] = case.reason
        futures.append(producer.send(settings.kafka.posts_topic, key=key.encode(), value=value))
    producer.flush()
    for future in futures:
        meta = future.get(timeout=10)
        ends[(meta.topic, meta.partition)] = max(
            ends.get((meta.topic, meta.partition), 0), meta.offset + 1
        )
    producer.close()

    _worker, thread, stop, errors = _start_worker(settings, KeywordScorer())
    collected = collect(settings.kafka, len(expected_decided), len(expected_dlq), timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors
    reasons = {key.decode(): letter.reason for letter, key in collected.dead_letters if key}
    assert reasons == expected_dlq
    assert set(collected.decisions) == expected_decided
    assert {
        (tp.topic, tp.partition): off for tp, off in committed_offsets(settings).items()
    } == ends
