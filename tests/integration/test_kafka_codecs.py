"""Compressed record batches on the real broker: every Kafka codec is read and written, and
a batch the worker cannot read holds back its partition only, with nothing lost.

Posts come from plain `kafka.KafkaProducer(compression_type=...)` instances built here
from the bootstrap address alone (not moderator.io): a producer configured apart from
the worker's clients, like the Java or librdkafka producers that send such batches.
Hiding a codec library or failing a CRC check is fault injection in this test process
(a kafka-python function patched), not a mock of Kafka: batches, fetches, offsets and
commits are the real broker's. With $MODERATOR_FAULT_FIGURES set, each test appends its
figures for docs/reliability.md (tests/faults/codec_report.py).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import kafka.codec as kafka_codec
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2
from kafka.record.default_records import DefaultRecordBatch
from prometheus_client import REGISTRY

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.io import connection_options, create_consumer, create_producer
from moderator.io.unreadable import UnreadableBatchError, guard_unreadable_batches
from moderator.local import free_port
from moderator.local.stack import create_topics
from moderator.policy import load_policy
from tests.faults.codec_report import record
from tests.integration.test_worker_delivery import KeywordScorer, committed_offsets
from tests.paths import DEFAULT_POLICY
from workers.health import WorkerHealth, serve_http
from workers.moderation_worker import ModerationWorker

pytestmark = pytest.mark.integration
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
WORKER_THREAD = "codec-test-worker"
Ends = dict[TopicPartition, int]


def _posts(settings: Settings, count: int, seed: int) -> list[SampleRecord]:
    # Captions only: small JSON posts, which batch and compress like real ones.
    return sample_stream(
        count, seed=seed, image_share=0.0, malformed_share=0.0, run_id=settings.kafka.group_id
    )


def _produce(
    settings: Settings, codec: str, samples: list[SampleRecord], partition: Callable[[int], int]
) -> Ends:
    """Send with an independent producer; return each partition's end offset from the acks."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        compression_type=None if codec == "none" else codec,
        linger_ms=50,
    )
    topic = settings.kafka.posts_topic
    futures = [
        producer.send(topic, key=s.key, value=s.value, partition=partition(i))
        for i, s in enumerate(samples)
    ]
    producer.flush()
    producer.close()
    ends: Ends = {}
    for future in futures:
        meta = future.get(timeout=10)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def _keyed(samples: list[SampleRecord], partitions: int = 4) -> Callable[[int], int]:
    """The default partitioner's choice, made explicit so the test knows it."""
    return lambda i: (murmur2(samples[i].key) & 0x7FFFFFFF) % partitions


def _unreadable_without(
    codec: str, settings: Settings, topic: str, partitions: set[int], patch: pytest.MonkeyPatch
) -> tuple[set[int], int]:
    """Hide the codec's library and read `partitions` of `topic` from offset 0: the
    partitions whose first batch could not be read, and how many records could be."""
    failed: set[int] = set()
    read = 0
    with patch.context() as hidden:
        hidden.setattr(kafka_codec, f"has_{codec}", lambda: False)
        consumer = KafkaConsumer(**connection_options(settings.kafka), enable_auto_commit=False)
        assert guard_unreadable_batches(consumer)
        try:
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                consumer.seek(tp, 0)
            deadline = time.monotonic() + 15
            while failed != partitions and time.monotonic() < deadline:
                try:
                    read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
                except UnreadableBatchError as error:
                    assert error.reason == "unsupported_codec" and error.offset == 0
                    failed.add(error.partition.partition)
                    consumer.pause(error.partition)
        finally:
            consumer.close()
    return failed, read


@contextmanager
def _worker(settings: Settings, health: WorkerHealth | None = None) -> Iterator[ModerationWorker]:
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        KeywordScorer(),
        load_policy(DEFAULT_POLICY),
        cache=None,
        health=health,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            worker.consumer.close(autocommit=False)
            worker.producer.close()

    thread = threading.Thread(target=run, name=WORKER_THREAD, daemon=True)
    thread.start()
    try:
        yield worker
        assert thread.is_alive() and not errors, errors  # poll errors never stopped it
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors


def _wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.mark.parametrize("codec", CODECS)
def test_posts_in_every_codec_are_decided_and_decisions_are_written_in_it(
    isolated_settings: Settings, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = isolated_settings.kafka.model_copy(update={"compression_type": codec})
    settings = isolated_settings.model_copy(update={"kafka": kafka})
    create_topics(settings)
    samples = _posts(settings, 60, seed=CODECS.index(codec))
    ends = _produce(settings, codec, samples, _keyed(samples))
    compressed = {tp.partition for tp in ends}
    if codec != "none":
        assert _unreadable_without(codec, settings, kafka.posts_topic, compressed, monkeypatch) == (
            compressed,
            0,
        )

    with _worker(settings) as worker:
        collected = collect(kafka, len(samples), 0, timeout_s=120)
        _wait_for(lambda: committed_offsets(settings) == ends)
    assert set(collected.decisions) == {s.post_id for s in samples}
    assert worker.stats.decided == len(samples)

    decision_partitions = {(murmur2(key.encode()) & 0x7FFFFFFF) % 4 for key in collected.decisions}
    if codec != "none":
        failed, read = _unreadable_without(
            codec, settings, kafka.decisions_topic, decision_partitions, monkeypatch
        )
        assert (failed, read) == (decision_partitions, 0)
    record(
        {
            "codec": codec,
            "posts": len(samples),
            "decided": len(collected.decisions),
            "decisions": worker.stats.decided,
            "read_back": collected.decision_records,
            "checked_compressed": "n/a" if codec == "none" else "posts and decisions",
        }
    )


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _metric(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


def test_a_batch_in_a_missing_codec_holds_its_partition_until_the_codec_is_back(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_settings = isolated_settings.worker.model_copy(
        update={"stuck_retry_s": 0.2, "stuck_retry_max_s": 1.0}
    )
    settings = isolated_settings.model_copy(update={"worker": worker_settings})
    kafka = settings.kafka
    create_topics(settings)
    samples = _posts(settings, 100, seed=41)
    # Partition 0: 10 gzip posts, 20 zstd, 10 gzip. Partitions 1-3: 60 gzip posts.
    head, zstd, tail, others = samples[:10], samples[10:30], samples[30:40], samples[40:]
    ends = _produce(settings, "gzip", head, lambda i: 0)
    ends |= _produce(settings, "zstd", zstd, lambda i: 0)
    ends |= _produce(settings, "gzip", tail, lambda i: 0)
    ends |= _produce(settings, "gzip", others, lambda i: 1 + i % 3)
    stuck = TopicPartition(kafka.posts_topic, 0)
    assert ends[stuck] == 40
    real_has_zstd = kafka_codec.has_zstd
    monkeypatch.setattr(kafka_codec, "has_zstd", lambda: False)  # this process lacks zstd
    errors_before = _metric("moderator_poll_errors_total", "unsupported_codec")

    health = WorkerHealth(stall_after_s=60)
    port = free_port()
    server = serve_http(health, port, host="127.0.0.1")
    try:
        with _worker(settings, health) as worker:
            readable = head + others
            early = collect(kafka, len(readable), 0, timeout_s=120)
            expected = {tp: end for tp, end in ends.items() if tp != stuck} | {stuck: 10}
            _wait_for(lambda: committed_offsets(settings) == expected)
            time.sleep(2)  # several retries, each failing
            assert committed_offsets(settings) == expected  # held at the failed offset
            assert set(early.decisions) == {s.post_id for s in readable}
            ready, body = _get(port, "/readyz")
            assert ready == 503 and f"partition {kafka.posts_topic}-0 stuck at offset 10" in body
            assert "unsupported_codec" in body and "zstd" in body
            assert _get(port, "/healthz")[0] == 200  # a restart would not help: stay alive
            assert _metric("moderator_stuck_partitions", "unsupported_codec") == 1
            errors = _metric("moderator_poll_errors_total", "unsupported_codec") - errors_before
            assert errors >= 2

            monkeypatch.setattr(kafka_codec, "has_zstd", real_has_zstd)  # the codec is back
            back = time.monotonic()
            _wait_for(lambda: not worker.poll_guard.stuck, timeout_s=30)  # read again
            readable_again_s = time.monotonic() - back
            final = collect(kafka, len(samples), 0, timeout_s=120)
            _wait_for(lambda: committed_offsets(settings) == ends)
            _wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout_s=10)
            assert _metric("moderator_stuck_partitions", "unsupported_codec") == 0
    finally:
        server.shutdown()
    lost = {s.post_id for s in samples} - set(final.decisions)
    assert not lost
    record(
        {
            "scenario": "zstd library missing for a 20-post zstd batch, then installed",
            "posts": len(samples),
            "decided_while_stuck": len(early.decisions),
            "held_at": "offset 10 (committed 10)",
            "decided": len(final.decisions),
            "lost": len(lost),
            "poll_errors": int(errors),
            "readable_again_s": round(readable_again_s, 1),
        }
    )


def test_a_transient_crc_failure_recovers_without_an_operator(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_settings = isolated_settings.worker.model_copy(update={"stuck_retry_s": 0.2})
    settings = isolated_settings.model_copy(update={"worker": worker_settings})
    create_topics(settings)
    samples = _posts(settings, 50, seed=43)
    ends = _produce(settings, "gzip", samples[:10], lambda i: 0)
    ends |= _produce(settings, "lz4", samples[10:20], lambda i: 0)  # the batch at offset 10
    ends |= _produce(settings, "gzip", samples[20:], lambda i: 1 + i % 3)
    real_validate = DefaultRecordBatch.validate_crc
    failures = {"left": 3}

    def flaky_crc(batch: DefaultRecordBatch) -> bool:
        # Only the worker's fetches of partition 0's second batch: a corrupt read, 3 times.
        worker_read = threading.current_thread().name == WORKER_THREAD
        if worker_read and batch.base_offset == 10 and failures["left"] > 0:
            failures["left"] -= 1
            return False
        return bool(real_validate(batch))

    monkeypatch.setattr(DefaultRecordBatch, "validate_crc", flaky_crc)
    errors_before = _metric("moderator_poll_errors_total", "corrupt_batch")
    with _worker(settings):
        collected = collect(settings.kafka, len(samples), 0, timeout_s=120)
        _wait_for(lambda: committed_offsets(settings) == ends)
    errors = _metric("moderator_poll_errors_total", "corrupt_batch") - errors_before
    assert failures["left"] == 0 and errors == 3
    lost = {s.post_id for s in samples} - set(collected.decisions)
    assert not lost
    record(
        {
            "scenario": "CRC check fails on 3 fetches of one batch (transient)",
            "posts": len(samples),
            "decided_while_stuck": "-",
            "held_at": "offset 10, retried after 0.2, 0.4, 0.8 s",
            "decided": len(collected.decisions),
            "lost": len(lost),
            "poll_errors": int(errors),
        }
    )
