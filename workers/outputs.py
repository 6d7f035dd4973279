"""What the worker writes to Kafka for a batch, and the bookkeeping once the broker has it.

Every input record ends as one or more outputs: a decision (plus a copy on the review
topic when the action is review) or a dead letter carrying the record as it came. A
batch is retired only when all its outputs are acknowledged; only then are its offsets
marked finished for the commit and its outputs counted (metrics and WorkerStats), so a
record is counted, and committed, once the broker holds what it became (at-least-once).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import orjson
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from moderator import metrics
from moderator.config import Settings
from moderator.errors import InvalidPostError
from moderator.schema import Action, DeadLetter
from workers.batch import Batch, Output, OutputKind
from workers.decisions import DecisionRecord
from workers.offsets import OffsetTracker
from workers.telemetry import log_decision

if TYPE_CHECKING:
    from workers.moderation_worker import WorkerStats

logger = logging.getLogger(__name__)


class Outputs:
    """Sends a batch's decisions and dead letters, and retires the batch once all are acked."""

    def __init__(
        self,
        settings: Settings,
        producer: KafkaProducer,
        tracker: OffsetTracker,
        stats: WorkerStats,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.tracker = tracker
        self.stats = stats

    def produce_decisions(
        self, batch: Batch, decisions: list[DecisionRecord], policy_s: float
    ) -> None:
        """Send one decision per valid post (and review copies); the batch is then produced."""
        kafka = self.settings.kafka
        log_decisions = self.settings.worker.log_decisions
        batch.produce_started = time.perf_counter()
        policy_ms = round(policy_s * 1000, 3)
        problems = Counter(p for item in batch.valid for p in item.decoded.problems)
        for problem, count in problems.items():
            metrics.POST_PROBLEMS.labels(reason=problem.value).inc(count)
        for item, decision in zip(batch.valid, decisions, strict=True):
            decision["timings_ms"]["policy"] = policy_ms
            for label in decision["labels"]:
                metrics.DECISION_LABELS.labels(category=label).inc()
            if log_decisions:
                log_decision(decision)
            key = decision["post_id"].encode()
            value = orjson.dumps(decision)
            future = self.producer.send(kafka.decisions_topic, key=key, value=value)
            batch.outputs.append(
                Output(item.record, future, OutputKind.DECISION, decision["action"])
            )
            if decision["action"] == Action.REVIEW:
                future = self.producer.send(kafka.review_topic, key=key, value=value)
                batch.outputs.append(Output(item.record, future, OutputKind.REVIEW, "review"))
        batch.produced = True

    def dead_letter(self, record: ConsumerRecord, error: InvalidPostError) -> Output:
        """Send the record, as it came, to the dead-letter topic with the reason in headers."""
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
        future = self.producer.send(
            self.settings.kafka.dlq_topic,
            key=record.key,
            value=record.value,
            headers=letter.headers(),
        )
        return Output(record, future, OutputKind.DEAD_LETTER, error.reason.value)

    def retire(self, batch: Batch) -> None:
        """All outputs acknowledged: count them and mark their inputs finished."""
        timeout = self.settings.worker.produce_timeout_s
        now_ms = time.time() * 1000
        if batch.produce_started is not None:  # decisions sent → every output acked
            produce_s = time.perf_counter() - batch.produce_started
            metrics.STAGE_SECONDS.labels(stage="produce").observe(produce_s)
        counts: Counter[tuple[OutputKind, str]] = Counter()
        for output in batch.outputs:
            # Raises on a failed produce: the worker stops without committing this batch.
            output.future.get(timeout=timeout)
            self.tracker.finished(output.partition, output.record.offset)
            counts[output.kind, output.label] += 1
            if output.kind is OutputKind.DECISION:
                metrics.END_TO_END_SECONDS.observe(
                    max(0.0, now_ms - output.record.timestamp) / 1000
                )
        # Counted once per batch and label: a labelled child lookup per post showed in profiles.
        for (kind, label), count in counts.items():
            if kind is OutputKind.DEAD_LETTER:
                metrics.DEAD_LETTERS.labels(reason=label).inc(count)
                self.stats.dead_lettered += count
            elif kind is OutputKind.DECISION:
                metrics.DECISIONS.labels(action=label).inc(count)
                self.stats.decided += count
                self.stats.actions[label] += count
