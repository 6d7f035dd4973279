"""The worker's delivery contract on a real broker and real Redis.

The model is a small deterministic stand-in behind the BatchScorer interface, so
these tests are about Kafka semantics; tests/e2e runs the same worker on Ray Serve.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from moderator.benchmark.ingest import run_ingest
from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.errors import SIGNAL_PROBLEMS
from moderator.io import connection_options, create_consumer, create_producer
from moderator.local.stack import create_topics
from moderator.policy import load_policy
from moderator.serving import ModelInfo, ScoreRequest, ScoreResponse
from tests.paths import DEFAULT_POLICY
from workers.moderation_worker import ModerationWorker

SIGNAL_PROBLEM_CODES = {code.value for code in SIGNAL_PROBLEMS}
pytestmark = pytest.mark.integration
CATEGORIES = [
    "hate",
    "offensive",
    "violence",
    "weapons",
    "drugs",
    "alcohol",
    "gambling",
    "swimwear",
]


class KeywordScorer:
    """Scores 'hate' 0.95 for captions containing 'vermin', else 0.0; never touches pixels.

    Its "text embedding" is [1, 0, 0, 0] for such a caption, so cached captions score alike.
    """

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    def info(self) -> ModelInfo:
        return ModelInfo(
            "keyword-1", CATEGORIES, image_size=32, image_embedding_dim=4, text_embedding_dim=4
        )

    def score(self, request: ScoreRequest) -> ScoreResponse:
        self.calls += 1
        if self.fail:
            raise RuntimeError("model unavailable")
        new_texts = np.zeros((len(request.texts), 4), dtype=np.float32)
        new_texts[:, 0] = ["vermin" in text for text in request.texts]
        table = np.concatenate([new_texts, request.cached_text_embeddings.reshape(-1, 4)])
        scores = np.zeros((len(request), len(CATEGORIES)), dtype=np.float32)
        for row, index in enumerate(request.caption_index):
            if index >= 0 and table[index, 0] > 0:
                scores[row, 0] = 0.95
        return ScoreResponse(
            "keyword-1",
            CATEGORIES,
            scores,
            new_image_embeddings=np.zeros((len(request.pixels), 4), dtype=np.float32),
            new_text_embeddings=new_texts,
            image_encode_ms=0.0,
            text_encode_ms=0.0,
            score_ms=0.0,
        )


def _produce(
    settings: Settings, count: int
) -> tuple[list[SampleRecord], dict[TopicPartition, int]]:
    """Produce samples; return them and each partition's end offset from the broker's acks."""
    samples = sample_stream(count, seed=11, malformed_share=0.08, run_id=settings.kafka.group_id)
    producer = create_producer(settings.kafka)
    futures = [
        producer.send(settings.kafka.posts_topic, key=sample.key, value=sample.value)
        for sample in samples
    ]
    producer.flush()
    producer.close()
    ends: dict[TopicPartition, int] = {}
    for future in futures:
        meta = future.get(timeout=10)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return samples, ends


def committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """The group's committed offsets, as the broker holds them."""
    consumer = KafkaConsumer(
        **connection_options(settings.kafka),
        group_id=settings.kafka.group_id,
        enable_auto_commit=False,
    )
    try:
        tps = [
            TopicPartition(settings.kafka.posts_topic, p)
            for p in consumer.partitions_for_topic(settings.kafka.posts_topic)
        ]
        committed = {tp: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close(autocommit=False)
    return {tp: off for tp, off in committed.items() if off is not None}


def _start_worker(
    settings: Settings, scorer: KeywordScorer
) -> tuple[ModerationWorker, threading.Thread, threading.Event, list[BaseException]]:
    """Run a ModerationWorker on a thread; exceptions it raises land in the returned list."""
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        scorer,
        load_policy(DEFAULT_POLICY),
        cache=None,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)
        finally:
            worker.consumer.close(autocommit=False)
            worker.producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return worker, thread, stop, errors


def test_every_record_is_decided_or_dead_lettered_then_committed(
    isolated_settings: Settings,
) -> None:
    settings = isolated_settings
    create_topics(settings)
    samples, ends = _produce(settings, 300)
    valid = {s.post_id for s in samples if s.valid}
    expected_reasons = {s.post_id: s.expected_reason for s in samples if not s.valid}

    _, thread, stop, errors = _start_worker(settings, KeywordScorer())
    collected = collect(settings.kafka, len(valid), len(expected_reasons), timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors

    assert set(collected.decisions) == valid
    reasons = {}
    for letter, key in collected.dead_letters:
        assert key is not None
        reasons[key.decode()] = letter.reason
        assert letter.source_topic == settings.kafka.posts_topic
    assert reasons == expected_reasons
    # Posts with an unusable image are decided from their caption, the problem listed.
    for sample in samples:
        if sample.valid:
            problems = collected.decisions[sample.post_id]["problems"]
            # ocr_truncated depends on the machine's load (OCR's time budget).
            problems = [p for p in problems if p not in SIGNAL_PROBLEM_CODES]
            assert problems == [p.value for p in sample.expected_problems]
    hateful = {pid for pid, d in collected.decisions.items() if d["action"] == "block"}
    assert hateful and all(collected.decisions[p]["labels"] == ["hate"] for p in hateful)
    assert committed_offsets(settings) == ends


def test_nothing_is_committed_when_the_model_fails(isolated_settings: Settings) -> None:
    settings = isolated_settings
    create_topics(settings)
    _, ends = _produce(settings, 50)
    scorer = KeywordScorer(fail=True)
    _, thread, stop, errors = _start_worker(settings, scorer)
    deadline = time.monotonic() + 60
    while not errors and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=30)
    assert scorer.calls >= 1
    assert errors and "model unavailable" in str(errors[0])
    assert ends and committed_offsets(settings) == {}


class SlowScorer(KeywordScorer):
    """Takes `delay_s` per call, like an overloaded model replica."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def score(self, request: ScoreRequest) -> ScoreResponse:
        time.sleep(self.delay_s)
        return super().score(request)


def test_slow_model_pauses_partitions_without_rebalance_or_loss(
    isolated_settings: Settings,
) -> None:
    worker_settings = isolated_settings.worker.model_copy(
        update={"batch_size": 10, "max_in_flight_batches": 2}
    )
    # A short poll interval would expel a worker that stopped polling while the model is slow.
    kafka = isolated_settings.kafka.model_copy(update={"max_poll_interval_ms": 3_000})
    settings = isolated_settings.model_copy(update={"worker": worker_settings, "kafka": kafka})
    create_topics(settings)
    samples, ends = _produce(settings, 120)
    valid = {s.post_id for s in samples if s.valid}

    worker, thread, stop, errors = _start_worker(settings, SlowScorer(delay_s=0.6))
    collected = collect(settings.kafka, len(valid), len(samples) - len(valid), timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors
    assert set(collected.decisions) == valid
    assert collected.decision_records == len(valid)  # no rebalance, so no re-delivery
    assert worker.stats.pauses >= 1
    assert worker.stats.rebalances == 0
    assert committed_offsets(settings) == ends


def test_bench_ingest_drains_the_topic_with_worker_processes(isolated_settings: Settings) -> None:
    """`moderator bench`'s no-op ingest run: real worker processes on the real broker."""
    samples = sample_stream(3000, seed=5, image_share=0.0, malformed_share=0.0, run_id="ingest")
    result = run_ingest(isolated_settings, samples, processes=1)
    assert result.decided == len(samples)
    assert result.posts_per_s > 0 and result.window_s > 0
