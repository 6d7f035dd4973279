"""The verdict consumer on the session's real broker and real Redis.

Verdict → strike + training row; a re-delivered verdict → one effect; an overturned appeal →
a corrected decision on the decisions topic and the strike removed; an invalid record → the
verdicts' dead-letter topic; a consumer stopped after its effects but before its commit →
the re-delivered batch changes nothing a second time.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import SecretStr

from moderator.config import Settings
from moderator.errors import ReasonCode
from moderator.io import connection_options, create_producer, ensure_topics
from moderator.local import LocalRedis
from moderator.local.process import free_port
from moderator.local.stack import write_settings_file
from moderator.policy.authors import RedisAuthorStore
from moderator.schema import Action, DeadLetter, Decision, Verdict
from moderator.verdicts.consumer import VerdictConsumer, build_consumer
from moderator.verdicts.settings import VerdictSettings

pytestmark = pytest.mark.integration
DECIDED_AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
WAIT_S = 60.0  # generous: a condition polled for, never a measured duration


@pytest.fixture()
def settings(isolated_settings: Settings, tmp_path: Path) -> Settings:
    """The session's broker and Redis; this test's own topics, groups, keys and rows file."""
    tag = uuid.uuid4().hex[:10]
    base = isolated_settings
    kafka = base.kafka.model_copy(update={"verdicts_topic": f"verdicts-{tag}"})
    verdicts = VerdictSettings(
        group_id=f"verdicts-{tag}",
        dlq_topic=f"verdicts-{tag}.dlq",
        training_rows_path=tmp_path / "rows" / "verdicts.jsonl",
        key_prefix=f"test:{tag}:verdict:",
        categories=["hate", "violence"],
        metrics_port=None,
        poll_timeout_ms=100,
    )
    authors = base.authors.model_copy(update={"key_prefix": f"test:{tag}:author:"})
    settings = base.model_copy(update={"kafka": kafka, "verdicts": verdicts, "authors": authors})
    ensure_topics(
        settings.kafka,
        [kafka.verdicts_topic, kafka.decisions_topic, verdicts.dlq_topic],
        partitions=2,
    )
    return settings


def verdict(**changes: Any) -> Verdict:
    post_id = changes.pop("post_id", "p-1")
    data: dict[str, Any] = {
        "verdict_id": f"v-{post_id}",
        "post_id": post_id,
        "author_id": "author-1",
        "decision": {
            "post_id": post_id,
            "model_version": "m-1",
            "policy_version": "default@3",
            "action": "block",
        },
        "outcome": "violation",
        "action": "block",
        "labels": ["hate"],
        "categories_confirmed": ["hate"],
        "reviewer_id": "r-9",
        "decided_at": DECIDED_AT.isoformat(),
        "caption": f"caption of {post_id}",
    }
    data.update(changes)
    return Verdict.model_validate(data)


def overturned_appeal(post_id: str) -> Verdict:
    return verdict(
        post_id=post_id,
        verdict_id=f"appeal-verdict-{post_id}",
        outcome="no_violation",
        action="allow",
        labels=[],
        categories_confirmed=[],
        categories_rejected=["hate"],
        appeal_id=f"appeal-{post_id}",
    )


def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = create_producer(settings.kafka)
    futures = [
        producer.send(settings.kafka.verdicts_topic, key=key, value=value) for key, value in records
    ]
    producer.flush()
    for future in futures:
        future.get(timeout=10)
    producer.close()


def produce_verdicts(settings: Settings, verdicts: list[Verdict]) -> None:
    produce(settings, [(v.post_id.encode(), v.model_dump_json().encode()) for v in verdicts])


def run_until_handled(settings: Settings, count: int) -> VerdictConsumer:
    """Run a consumer on a thread until `count` records were handled, then stop it (it
    commits the batch in hand first)."""
    consumer = build_consumer(settings)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run(stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            consumer.consumer.close(autocommit=False)
            consumer.producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    stats = consumer.stats
    while stats.applied + stats.duplicates + stats.dead_lettered < count and not errors:
        assert time.monotonic() < deadline, f"handled {stats} of {count} records"
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=WAIT_S)
    assert not errors and not thread.is_alive()
    return consumer


def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record the topic holds now (no group: assigned, read to the end offsets)."""
    consumer = KafkaConsumer(**connection_options(settings.kafka), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + WAIT_S
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


def committed(settings: Settings) -> int:
    """Records of the verdicts topic the consumer group has committed past."""
    topic = settings.kafka.verdicts_topic
    consumer = KafkaConsumer(
        **connection_options(settings.kafka),
        group_id=settings.verdicts.group_id,
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.committed(tp) or 0 for tp in partitions)
    finally:
        consumer.close(autocommit=False)


@pytest.fixture()
def authors(settings: Settings) -> Iterator[RedisAuthorStore]:
    url = settings.redis.url
    assert url is not None
    store = RedisAuthorStore.from_url(url.get_secret_value(), settings.authors)
    yield store
    store.client.close()


def strikes(store: RedisAuthorStore, author_id: str) -> set[str]:
    key = f"{store.config.key_prefix}{author_id}:strikes"
    return {member.decode() for member in store.client.zrange(key, 0, -1)}


def rows(settings: Settings) -> list[dict[str, Any]]:
    path = settings.verdicts.training_rows_path
    assert path is not None
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_confirmed_violation_strikes_once_and_writes_one_row_even_when_redelivered(
    settings: Settings, authors: RedisAuthorStore
) -> None:
    # The worker already struck the author for p-0: the reviewer's strike is the same one.
    authors.record("author-1", "p-0", DECIDED_AT.timestamp() - 60, Action.BLOCK)
    authors.flush()
    struck = verdict(post_id="p-0")
    confirmed = verdict(post_id="p-1")
    cleared = verdict(
        post_id="p-2",
        outcome="no_violation",
        action="allow",
        labels=[],
        categories_confirmed=[],
        categories_rejected=["hate"],
        decision={**confirmed.decision.model_dump(), "post_id": "p-2", "action": "review"},
    )
    produce_verdicts(settings, [struck, confirmed, cleared, confirmed])  # the last: a re-delivery

    consumer = run_until_handled(settings, 4)

    assert (consumer.stats.applied, consumer.stats.duplicates) == (3, 1)
    assert strikes(authors, "author-1") == {"p-0", "p-1"}
    # The policy reads the reviewer's strikes like a worker's: two, not three.
    assert authors.counters("author-1", DECIDED_AT.timestamp() + 1).strikes == 2
    written = rows(settings)
    # Rows come in partition order; posts on different partitions in any order.
    assert sorted((r["id"], r["label"], r["text"]) for r in written) == [
        ("v-p-0", ["hate"], "caption of p-0"),
        ("v-p-1", ["hate"], "caption of p-1"),
        ("v-p-2", [], "caption of p-2"),
    ]
    assert committed(settings) == 4
    assert read_topic(settings, settings.kafka.decisions_topic) == []  # no appeal: no correction


def test_an_overturned_appeal_emits_a_corrected_decision_and_removes_the_strike(
    settings: Settings, authors: RedisAuthorStore
) -> None:
    # The worker blocked the post and struck its author.
    authors.record("author-1", "p-7", DECIDED_AT.timestamp() - 60, Action.BLOCK)
    authors.flush()
    assert strikes(authors, "author-1") == {"p-7"}
    appeal = overturned_appeal("p-7")
    produce_verdicts(settings, [appeal])

    run_until_handled(settings, 1)

    assert strikes(authors, "author-1") == set()
    (record,) = read_topic(settings, settings.kafka.decisions_topic)
    assert record.key == b"p-7"
    corrected = Decision.model_validate_json(record.value)
    assert (corrected.action, corrected.labels) == (Action.ALLOW, [])
    assert corrected.correction is not None
    assert corrected.correction.reason == "appeal_overturned"
    assert corrected.correction.verdict_id == appeal.verdict_id
    assert corrected.correction.appeal_id == "appeal-p-7"
    assert corrected.correction.corrected_action is Action.BLOCK
    assert (corrected.model_version, corrected.policy_version) == ("m-1", "default@3")
    assert corrected.source.topic == settings.kafka.verdicts_topic
    assert [r["label"] for r in rows(settings)] == [[]]


def test_an_invalid_record_is_dead_lettered_as_it_came_and_the_rest_applied(
    settings: Settings, authors: RedisAuthorStore
) -> None:
    good = verdict(post_id="p-3")
    wrong_key = verdict(post_id="p-4").model_dump_json().encode()
    produce(
        settings,
        [
            (b"p-9", b"{not json"),
            (b"someone-else", wrong_key),
            (b"p-3", good.model_dump_json().encode()),
        ],
    )

    consumer = run_until_handled(settings, 3)

    assert (consumer.stats.dead_lettered, consumer.stats.applied) == (2, 1)
    letters = read_topic(settings, settings.verdicts.dlq_topic)
    by_value = {record.value: record for record in letters}
    assert set(by_value) == {b"{not json", wrong_key}
    for record in letters:
        letter = DeadLetter.from_headers(list(record.headers))
        assert letter.reason is ReasonCode.INVALID_VERDICT
        assert letter.source_topic == settings.kafka.verdicts_topic
    assert by_value[wrong_key].key == b"someone-else"
    assert "key" in DeadLetter.from_headers(list(by_value[wrong_key].headers)).detail
    assert strikes(authors, "author-1") == {"p-3"}
    assert committed(settings) == 3


def test_a_batch_redelivered_after_a_stop_before_its_commit_has_no_second_effect(
    settings: Settings, authors: RedisAuthorStore
) -> None:
    verdicts = [verdict(post_id="p-5"), overturned_appeal("p-6"), verdict(post_id="p-8")]
    produce_verdicts(settings, verdicts)
    # A consumer applies every effect, then dies before committing (closed without a commit).
    first = build_consumer(settings)
    first.consumer.subscribe([settings.kafka.verdicts_topic])
    polled: list[ConsumerRecord] = []
    deadline = time.monotonic() + WAIT_S
    while len(polled) < len(verdicts):
        assert time.monotonic() < deadline, f"polled {len(polled)} records"
        polled.extend(r for batch in first.consumer.poll(timeout_ms=200).values() for r in batch)
    first.process(polled)
    first.consumer.close(autocommit=False)
    first.producer.close()
    assert committed(settings) == 0

    again = run_until_handled(settings, len(verdicts))

    assert (again.stats.applied, again.stats.duplicates) == (0, 3)
    assert committed(settings) == 3
    assert strikes(authors, "author-1") == {"p-5", "p-8"}
    assert len(read_topic(settings, settings.kafka.decisions_topic)) == 1
    assert sorted(r["id"] for r in rows(settings)) == sorted(v.verdict_id for v in verdicts)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def test_the_moderator_verdicts_process_applies_counts_and_commits_on_sigterm(
    settings: Settings, authors: RedisAuthorStore, tmp_path: Path
) -> None:
    port = free_port()
    own = settings.verdicts.model_copy(update={"metrics_port": port})
    config = write_settings_file(settings.model_copy(update={"verdicts": own}), tmp_path)
    produce_verdicts(settings, [verdict(post_id="p-11"), overturned_appeal("p-12")])
    log = (tmp_path / "verdicts.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from moderator.cli import main; main()", "verdicts", "-c", config],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        expected = [
            'moderator_verdicts_total{action="block",outcome="violation"} 1.0',
            'moderator_verdicts_total{action="block",outcome="no_violation"} 1.0',
            'moderator_appeals_total{outcome="overturned"} 1.0',
            'moderator_verdict_strikes_total{result="added"} 1.0',
            'moderator_verdict_categories_total{action="block",category="hate",result="confirmed"}'
            " 1.0",
        ]
        deadline = time.monotonic() + WAIT_S
        metrics = ""
        while not all(line in metrics for line in expected):
            assert process.poll() is None, (tmp_path / "verdicts.log").read_text()
            assert time.monotonic() < deadline, f"missing from /metrics: {expected}\n{metrics}"
            time.sleep(0.2)
            with contextlib.suppress(OSError):  # not serving yet
                metrics = _scrape(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0, (tmp_path / "verdicts.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert committed(settings) == 2
    assert strikes(authors, "author-1") == {"p-11"}
    assert len(read_topic(settings, settings.kafka.decisions_topic)) == 1


def test_a_redis_outage_commits_nothing_and_the_batch_is_applied_once_redis_returns(
    settings: Settings,
) -> None:
    redis_server = LocalRedis().start()
    port = redis_server.port
    redis_settings = settings.redis.model_copy(update={"url": SecretStr(redis_server.url)})
    settings = settings.model_copy(update={"redis": redis_settings})
    consumer = build_consumer(settings)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    try:
        redis_server.stop()
        produce_verdicts(settings, [verdict(post_id="p-21"), overturned_appeal("p-22")])
        thread.start()
        deadline = time.monotonic() + WAIT_S
        while consumer.stats.retries < 1:
            assert time.monotonic() < deadline, "no failed attempt while Redis was down"
            time.sleep(0.05)
        assert committed(settings) == 0 and consumer.stats.applied == 0
        redis_server = LocalRedis(port=port).start()
        while consumer.stats.applied < 2:
            assert time.monotonic() < deadline, "not applied after Redis came back"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)
        consumer.consumer.close(autocommit=False)
        consumer.producer.close()
        store = RedisAuthorStore.from_url(redis_server.url, settings.authors)
        found = strikes(store, "author-1")
        store.client.close()
        redis_server.stop()
    assert committed(settings) == 2
    assert found == {"p-21"}
    # Nothing was produced before the strikes were written: one correction, not one per try.
    assert len(read_topic(settings, settings.kafka.decisions_topic)) == 1
