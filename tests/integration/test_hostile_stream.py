"""The hostile corpus through a real worker and broker: each record that is not a post is
dead-lettered with its reason, each post is decided with its problems listed, and the
partitions keep moving past every one of them."""

from __future__ import annotations

import orjson
import pytest

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.errors import SIGNAL_PROBLEMS
from moderator.io import create_producer
from moderator.local.stack import create_topics
from tests.hostile_corpus import hostile_cases
from tests.integration.test_worker_delivery import KeywordScorer, _start_worker, committed_offsets

SIGNAL_PROBLEM_CODES = {code.value for code in SIGNAL_PROBLEMS}
pytestmark = pytest.mark.integration


def test_hostile_records_are_dead_lettered_or_decided_with_their_problems(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    create_topics(settings)
    producer = create_producer(settings.kafka)
    expected_dlq, expected_problems, ends = {}, {}, {}
    futures = []
    for i, case in enumerate(hostile_cases()):
        key = f"case-{i}"
        value = case.value
        if case.reason is None:
            # Every corpus post has post_id "h" (twice in the duplicate-field cases).
            value = value.replace(b'"h"', f'"{key}"'.encode())
            expected_problems[key] = sorted(p.value for p in case.problems)
        else:
            expected_dlq[key] = case.reason
        record_key = case.key or key.encode()
        futures.append(producer.send(settings.kafka.posts_topic, key=record_key, value=value))
    producer.flush()
    for future in futures:
        meta = future.get(timeout=10)
        ends[(meta.topic, meta.partition)] = max(
            ends.get((meta.topic, meta.partition), 0), meta.offset + 1
        )
    producer.close()

    _worker, thread, stop, errors = _start_worker(settings, KeywordScorer())
    collected = collect(settings.kafka, len(expected_problems), len(expected_dlq), timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors
    reasons = {key.decode(): letter.reason for letter, key in collected.dead_letters if key}
    assert reasons == expected_dlq
    # ocr_truncated depends on the machine's load (OCR's time budget): not this test's subject.
    problems = {
        post_id: sorted(p for p in d["problems"] if p not in SIGNAL_PROBLEM_CODES)
        for post_id, d in collected.decisions.items()
    }
    assert problems == expected_problems
    assert {
        (tp.topic, tp.partition): off for tp, off in committed_offsets(settings).items()
    } == ends


EVADED = {
    "zero-width": "they are v\u200berm\u200bin",
    "cyrillic-i": "they are verm\u0456n",
    "fullwidth": "they are \uff56\uff45\uff52\uff4d\uff49\uff4e",
    "reordered": "they are \u202enimrev\u202c",
    "plain": "they are vermin",
}


def test_evaded_words_reach_the_model_as_the_plain_word(isolated_settings: Settings) -> None:
    # KeywordScorer scores hate only when the text it receives contains "vermin": each
    # spelling a reader sees as "vermin" must arrive as that word, and the post is blocked.
    settings = isolated_settings
    create_topics(settings)
    producer = create_producer(settings.kafka)
    for name, caption in EVADED.items():
        value = orjson.dumps(
            {"post_id": name, "author_id": "a", "created_at": "2026-11-30T00:00:00Z"}
            | {"caption": caption}
        )
        producer.send(settings.kafka.posts_topic, key=name.encode(), value=value)
    producer.flush()
    producer.close()
    _worker, thread, stop, errors = _start_worker(settings, KeywordScorer())
    collected = collect(settings.kafka, len(EVADED), 0, timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors
    for name in EVADED:
        decision = collected.decisions[name]
        assert decision["scores"]["hate"] == 0.95, name
        assert decision["action"] == "block", name
        assert ("obfuscation" in decision["labels"]) is (name != "plain"), name
