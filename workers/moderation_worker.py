"""The moderation worker: poll a micro-batch, decide it, produce, then commit.

Delivery is at-least-once: offsets move only after every decision and dead-letter
record of the batch is acknowledged by the broker. A crash between produce and
commit re-delivers the batch, and the same post, model and policy give the same
decision again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from moderator import metrics
from moderator.cache import FeatureCache
from moderator.config import Settings
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest import DecodedPost, decode_post
from moderator.policy import ThresholdPolicy
from moderator.schema import Action, DeadLetter, Decision, SourceRef
from workers.batch_builder import build_request
from workers.health import WorkerHealth
from workers.offsets import OffsetTracker
from workers.scorer import BatchScorer

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    consumed: int = 0
    decided: int = 0
    dead_lettered: int = 0
    batches: int = 0
    actions: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Valid:
    record: ConsumerRecord
    decoded: DecodedPost


class ModerationWorker:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        scorer: BatchScorer,
        policy: ThresholdPolicy,
        cache: FeatureCache | None,
        health: WorkerHealth | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.scorer = scorer
        self.policy = policy
        self.cache = cache
        self.info = scorer.info()
        policy.check_categories(self.info.categories)
        self.tracker = OffsetTracker()
        self.stats = WorkerStats()
        self.health = health or WorkerHealth(stall_after_s=float("inf"))

    def run(self, stop: threading.Event) -> WorkerStats:
        """Consume until `stop` is set, then finish the batch in hand, commit and return."""
        kafka = self.settings.kafka
        self.consumer.subscribe([kafka.posts_topic])
        logger.info("worker consuming %s as group %s", kafka.posts_topic, kafka.group_id)
        self.health.set_ready(True)
        while not stop.is_set():
            self.health.beat()
            polled = self.consumer.poll(
                timeout_ms=self.settings.worker.poll_timeout_ms,
                max_records=self.settings.worker.batch_size,
            )
            records = [record for batch in polled.values() for record in batch]
            if records:
                self.process(records)
                self.commit()
        self.health.set_ready(False)
        logger.info(
            "worker stopping: %s decided, %s dead-lettered",
            self.stats.decided,
            self.stats.dead_lettered,
        )
        return self.stats

    def process(self, records: list[ConsumerRecord]) -> None:
        """Decide one polled batch and wait until every output is acknowledged."""
        metrics.POSTS_CONSUMED.inc(len(records))
        self.stats.consumed += len(records)
        self.stats.batches += 1
        sends: list[tuple[ConsumerRecord, FutureRecordMetadata, str]] = []
        started = time.perf_counter()
        valid: list[_Valid] = []
        for record in records:
            self.tracker.started(TopicPartition(record.topic, record.partition), record.offset)
            try:
                decoded = decode_post(record.value, self.settings.limits, self.info.image_size)
            except InvalidPostError as exc:
                sends.append((record, self._dead_letter(record, exc), f"dlq:{exc.reason.value}"))
                continue
            except Exception as exc:
                logger.exception("decoder failed on %s-%s@%s", record.topic, record.partition,
                                 record.offset)
                error = InvalidPostError(ReasonCode.DECODER_ERROR, f"{type(exc).__name__}: {exc}")
                sends.append((record, self._dead_letter(record, error), "dlq:decoder_error"))
                continue
            valid.append(_Valid(record, decoded))
        decoded_at = time.perf_counter()
        metrics.STAGE_SECONDS.labels(stage="decode").observe(decoded_at - started)
        if valid:
            sends.extend(self._decide(valid, decode_ms=(decoded_at - started) * 1000))
        self._await_acks(sends)

    def _decide(
        self, valid: list[_Valid], decode_ms: float
    ) -> list[tuple[ConsumerRecord, FutureRecordMetadata, str]]:
        t0 = time.perf_counter()
        built = build_request(
            [v.decoded for v in valid],
            self.cache,
            self.info.image_size,
            self.info.image_embedding_dim,
        )
        t1 = time.perf_counter()
        response = self.scorer.score(built.request)
        t2 = time.perf_counter()
        if self.cache is not None:
            self.cache.put_many(
                dict(zip(built.encode_hashes, response.new_embeddings, strict=True))
            )
        metrics.BATCH_SIZE.observe(len(valid))
        metrics.STAGE_SECONDS.labels(stage="cache").observe(t1 - t0)
        metrics.STAGE_SECONDS.labels(stage="inference").observe(t2 - t1)

        kafka = self.settings.kafka
        decisions: list[tuple[_Valid, Decision]] = []
        for row, item in enumerate(valid):
            scores = {
                c: round(float(s), 6)
                for c, s in zip(response.categories, response.scores[row], strict=True)
            }
            result = self.policy.decide(scores)
            decisions.append(
                (
                    item,
                    Decision(
                        post_id=item.decoded.post.post_id,
                        author_id=item.decoded.post.author_id,
                        action=result.action,
                        labels=result.labels,
                        scores=scores,
                        rules_fired=result.rules_fired,
                        shadow_rules=result.shadow_rules,
                        policy_version=self.policy.qualified_version,
                        model_version=response.model_version,
                        cache_hits=["image"] if row in built.cache_hit_rows else [],
                        timings_ms={},
                        source=SourceRef(
                            topic=item.record.topic,
                            partition=item.record.partition,
                            offset=item.record.offset,
                            timestamp_ms=item.record.timestamp,
                        ),
                    ),
                )
            )
        t3 = time.perf_counter()
        metrics.STAGE_SECONDS.labels(stage="policy").observe(t3 - t2)
        timings = {
            "decode": round(decode_ms, 3),
            "cache": round((t1 - t0) * 1000, 3),
            "inference": round((t2 - t1) * 1000, 3),
            "policy": round((t3 - t2) * 1000, 3),
        }
        sends = []
        for item, decision in decisions:
            decision.timings_ms = timings
            key = decision.post_id.encode()
            value = orjson.dumps(decision.model_dump(mode="json"))
            sends.append(
                (
                    item.record,
                    self.producer.send(kafka.decisions_topic, key=key, value=value),
                    decision.action.value,
                )
            )
            if decision.action is Action.REVIEW:
                sends.append(
                    (item.record, self.producer.send(kafka.review_topic, key=key, value=value), "")
                )
        return sends

    def _dead_letter(self, record: ConsumerRecord, error: InvalidPostError) -> FutureRecordMetadata:
        # Log where the record is, never what it holds.
        logger.info(
            "dead-letter %s-%s@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            error.reason.value,
        )
        letter = DeadLetter(
            error.reason, error.detail, record.topic, record.partition, record.offset
        )
        future: FutureRecordMetadata = self.producer.send(
            self.settings.kafka.dlq_topic,
            key=record.key,
            value=record.value,
            headers=letter.headers(),
        )
        return future

    def _await_acks(self, sends: list[tuple[ConsumerRecord, FutureRecordMetadata, str]]) -> None:
        started = time.perf_counter()
        timeout = self.settings.worker.produce_timeout_s
        self.producer.flush(timeout=timeout)
        for record, future, outcome in sends:
            # Raises on a failed produce: the worker stops without committing this batch.
            future.get(timeout=timeout)
            tp = TopicPartition(record.topic, record.partition)
            self.tracker.finished(tp, record.offset)
            if outcome.startswith("dlq:"):
                reason = outcome.removeprefix("dlq:")
                metrics.DEAD_LETTERS.labels(reason=reason).inc()
                self.stats.dead_lettered += 1
            elif outcome:
                metrics.DECISIONS.labels(action=outcome).inc()
                self.stats.decided += 1
                self.stats.actions[outcome] += 1
        now_ms = time.time() * 1000
        for record, _, outcome in sends:
            if outcome and not outcome.startswith("dlq:"):
                metrics.END_TO_END_SECONDS.observe(max(0.0, now_ms - record.timestamp) / 1000)
        metrics.STAGE_SECONDS.labels(stage="produce").observe(time.perf_counter() - started)

    def commit(self) -> None:
        points = self.tracker.commit_points()
        if not points:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in points.items()}
        try:
            self.consumer.commit(offsets)
            metrics.COMMITS.labels(outcome="ok").inc()
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance): these records will be re-delivered. Allowed.
            metrics.COMMITS.labels(outcome="failed").inc()
            logger.warning("offset commit failed, records will be re-delivered: %s", exc)
            self.tracker.forget(set(points))
