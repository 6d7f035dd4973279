"""The verdict consumer's loop: poll a batch, apply its verdicts' effects, then commit.

At-least-once, like the worker: a batch's offsets are committed only after every effect
is done (strikes written to Redis, corrected decisions and dead letters acknowledged by
the broker, training rows flushed and fsynced, the verdicts marked in the ledger). A
failure of Redis, the broker or the disk commits nothing: the partitions are rewound to
the batch and it is retried with back-off. A re-delivered verdict has no second effect
(moderator.verdicts.ledger). Records are handled in one thread, batch after batch, so a
rebalance never finds work in flight.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import orjson
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import start_http_server

from moderator import metrics
from moderator.cache.client import redis_client
from moderator.config import Settings
from moderator.errors import ConfigError, ModeratorError, ReasonCode
from moderator.io import create_consumer, create_producer
from moderator.io.unreadable import UnreadableBatchError
from moderator.policy.authors import RedisAuthorStore
from moderator.schema import DeadLetter, SourceRef
from moderator.verdicts.ledger import Step, VerdictLedger
from moderator.verdicts.plan import (
    InvalidVerdictError,
    StrikeChange,
    VerdictPlan,
    parse_verdict,
    plan_verdict,
    row_line,
)
from moderator.verdicts.rows import TrainingRows

logger = logging.getLogger(__name__)

OTHER_CATEGORY = metrics.OTHER_CATEGORY
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0  # well under max_poll_interval_ms: the group keeps this consumer
# Redis socket timeout of the consumer's own client: strikes and marks wait for an answer.
REDIS_TIMEOUT_S = 5.0


@dataclass
class VerdictStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    corrections: int = 0
    rows: int = 0
    retries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class VerdictConsumer:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        authors: RedisAuthorStore,
        ledger: VerdictLedger,
        rows: TrainingRows | None,
        categories: list[str],
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.authors = authors
        self.ledger = ledger
        self.rows = rows
        self.categories = set(categories)
        self.stats = VerdictStats()
        metrics.declare_verdict_categories([*categories, OTHER_CATEGORY])

    def run(self, stop: threading.Event) -> VerdictStats:
        """Consume until `stop` is set; the batch in hand is finished and committed first."""
        kafka, own = self.settings.kafka, self.settings.verdicts
        self.consumer.subscribe([kafka.verdicts_topic])
        backoff = RETRY_FIRST_S
        while not stop.is_set():
            try:
                polled = self.consumer.poll(timeout_ms=own.poll_timeout_ms)
            except UnreadableBatchError as exc:
                # Never skipped: re-read from the same offset after a pause.
                metrics.POLL_ERRORS.labels(reason=exc.reason.value).inc()
                logger.error("cannot read %s at %s: %s", exc.partition, exc.offset, exc.detail)
                self.consumer.seek(exc.partition, exc.offset)
                stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            records = [record for batch in polled.values() for record in batch]
            if not records:
                continue
            try:
                self.process(records)
            except (redis.RedisError, KafkaError, OSError) as exc:
                self.stats.retries += 1
                logger.warning("verdict batch failed, retrying in %.0f s: %r", backoff, exc)
                self._rewind(records)
                stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            backoff = RETRY_FIRST_S
            self.commit(records)
        return self.stats

    def process(self, records: list[ConsumerRecord]) -> None:
        """Apply every effect of a batch; returns once all are durable (then commit)."""
        own, kafka = self.settings.verdicts, self.settings.kafka
        timeout = own.produce_timeout_s
        pending: list[Any] = []
        plans: list[VerdictPlan] = []
        letters = 0
        for record in records:
            try:
                verdict = parse_verdict(record.value, record.key)
            except InvalidVerdictError as exc:
                pending.append(self._dead_letter(record, exc.detail))
                letters += 1
                continue
            source = SourceRef(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp,
            )
            plans.append(
                plan_verdict(
                    verdict,
                    source,
                    self.settings.authors.strike_actions,
                    write_rows=self.rows is not None,
                )
            )
        done = self.ledger.steps_done([plan.verdict.verdict_id for plan in plans])
        fresh: list[tuple[VerdictPlan, set[Step]]] = []
        seen: set[str] = set()
        duplicates = 0
        for plan, steps in zip(plans, done, strict=True):
            verdict_id = plan.verdict.verdict_id
            if Step.DONE in steps or verdict_id in seen:
                duplicates += 1
                continue
            seen.add(verdict_id)
            fresh.append((plan, steps))

        strikes = self.authors.change_strikes([plan.strike_write() for plan, _ in fresh])
        corrections = [
            plan
            for plan, steps in fresh
            if plan.correction is not None and Step.CORRECTION not in steps
        ]
        for plan in corrections:
            pending.append(
                self.producer.send(
                    kafka.decisions_topic,
                    key=plan.verdict.post_id.encode(),
                    value=orjson.dumps(plan.correction),
                )
            )
        self.producer.flush(timeout=timeout)
        for future in pending:
            future.get(timeout=timeout)  # raises KafkaError: nothing is committed
        self.ledger.mark([plan.verdict.verdict_id for plan in corrections], Step.CORRECTION)

        if self.rows is not None:
            rows = [
                plan
                for plan, steps in fresh
                if plan.training_row is not None and Step.ROW not in steps
            ]
            self.rows.append(row_line(plan.training_row) for plan in rows if plan.training_row)
            self.ledger.mark([plan.verdict.verdict_id for plan in rows], Step.ROW)
            self.stats.rows += len(rows)
        self.ledger.mark([plan.verdict.verdict_id for plan, _ in fresh], Step.DONE)

        self._count([plan for plan, _ in fresh], strikes, duplicates, letters)
        self.stats.corrections += len(corrections)

    def _dead_letter(self, record: ConsumerRecord, detail: str) -> Any:
        # Log where the record is, never what it holds.
        logger.info("dead-letter %s-%s@%s: invalid_verdict", *_where(record))
        letter = DeadLetter(
            ReasonCode.INVALID_VERDICT, detail, record.topic, record.partition, record.offset
        )
        return self.producer.send(
            self.settings.verdicts.dlq_topic,
            key=record.key,
            value=record.value,
            headers=letter.headers(),
        )

    def _count(
        self, plans: list[VerdictPlan], strikes: list[bool], duplicates: int, letters: int
    ) -> None:
        """Metrics of a finished batch: each verdict counted once, when it is done."""
        for plan, changed in zip(plans, strikes, strict=True):
            verdict = plan.verdict
            action = verdict.decision.action.value
            metrics.VERDICTS.labels(action=action, outcome=verdict.outcome.value).inc()
            for names, result in (
                (verdict.categories_confirmed, "confirmed"),
                (verdict.categories_rejected, "rejected"),
            ):
                for name in set(names):
                    category = name if name in self.categories else OTHER_CATEGORY
                    metrics.VERDICT_CATEGORIES.labels(
                        action=action, category=category, result=result
                    ).inc()
            if verdict.appeal_id is not None:
                outcome = "overturned" if plan.correction is not None else "upheld"
                metrics.APPEALS.labels(outcome=outcome).inc()
            if changed:
                change = "added" if plan.strike is StrikeChange.ADD else "removed"
                metrics.VERDICT_STRIKES.labels(result=change).inc()
            metrics.VERDICT_TRAINING_ROWS.labels(result=plan.row_result.value).inc()
            self.stats.outcomes[verdict.outcome.value] += 1
        metrics.VERDICT_DUPLICATES.inc(duplicates)
        metrics.INVALID_VERDICTS.inc(letters)
        self.stats.applied += len(plans)
        self.stats.duplicates += duplicates
        self.stats.dead_lettered += letters

    def commit(self, records: list[ConsumerRecord]) -> None:
        """Commit past every record of the batch (all its effects are done)."""
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            metrics.COMMITS.labels(outcome="ok").inc()
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance): the batch is re-delivered, without second effects.
            metrics.COMMITS.labels(outcome="failed").inc()
            logger.warning("commit failed, the batch will be re-delivered: %s", exc)

    def _rewind(self, records: list[ConsumerRecord]) -> None:
        """Seek each partition back to the batch's first record, to read it again."""
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)


def _where(record: ConsumerRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def verdict_categories(settings: Settings) -> list[str]:
    """Categories the metrics name: the setting, else the policy's."""
    if settings.verdicts.categories is not None:
        return list(settings.verdicts.categories)
    from moderator.policy.loader import load_policy

    return list(load_policy(settings.policy_path).categories)


def build_consumer(settings: Settings) -> VerdictConsumer:
    """Kafka clients, Redis and the rows file from settings (ConfigError when unusable)."""
    url = settings.redis.url.get_secret_value() if settings.redis.url is not None else ""
    if not settings.redis.enabled or not url:
        raise ConfigError(
            "redis.url is not set (MODERATOR_REDIS__URL): the verdict consumer keeps strikes "
            "and the verdicts it has applied in Redis"
        )
    try:
        client = redis_client(url, REDIS_TIMEOUT_S, settings.redis.ssl_ca_certs)
    except ValueError as exc:  # the URL's scheme or form; the message does not echo it
        raise ConfigError(f"redis.url: {exc}") from exc
    own = settings.verdicts
    rows = TrainingRows(own.training_rows_path) if own.training_rows_path is not None else None
    categories = verdict_categories(settings)
    try:
        consumer = create_consumer(
            settings.kafka, group_id=own.group_id, client_id=f"{settings.kafka.client_id}-verdicts"
        )
        producer = create_producer(settings.kafka)
    except KafkaError as exc:  # no broker answers, or a client setting it refuses
        raise ModeratorError(
            f"cannot start the Kafka clients for kafka.bootstrap_servers "
            f"({settings.kafka.bootstrap_servers}): {exc!r}"
        ) from exc
    return VerdictConsumer(
        settings,
        consumer,
        producer,
        RedisAuthorStore(client, settings.authors),
        VerdictLedger(client, own.key_prefix, own.seen_ttl_s),
        rows,
        categories,
    )


def run_verdicts(
    settings: Settings, stop: threading.Event, handle_signals: bool = True
) -> VerdictStats:
    """`moderator verdicts`: run until SIGTERM/SIGINT (or `stop`), then commit and close."""
    verdicts = build_consumer(settings)
    if handle_signals:

        def _handle(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s: finishing the batch in hand", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
    port = settings.verdicts.metrics_port
    if port:
        start_http_server(port)
        logger.info("metrics on :%s", port)
    logger.info(
        "consuming verdicts from %s (group %s)",
        settings.kafka.verdicts_topic,
        settings.verdicts.group_id,
    )
    try:
        return verdicts.run(stop)
    finally:
        verdicts.producer.flush(timeout=settings.verdicts.produce_timeout_s)
        verdicts.producer.close()
        verdicts.consumer.close(autocommit=False)
        verdicts.authors.client.close()
