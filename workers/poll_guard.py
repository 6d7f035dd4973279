"""Keep consuming when one partition holds a record batch the worker cannot read.

A batch in a codec whose library is missing, or one that fails its CRC, raises out of
`KafkaConsumer.poll` (as `UnreadableBatchError` once moderator.io has guarded the
consumer: see moderator/io/unreadable.py for how kafka-python surfaces these). Raised
out of the worker's loop it would stop the process, and the restarted worker would stop
on the same batch: a crash loop with the partition stuck behind it.

`PollGuard.poll` catches it instead and, for that partition only:

- logs one line with topic, partition, offset and the error, and counts
  `moderator_poll_errors_total{reason}`;
- pauses the partition and seeks it back to the failed offset, so the other partitions
  keep flowing and nothing at or after the offset is read, decided or committed;
- retries after a back-off (doubling up to a cap): a transient corrupt fetch recovers on
  its own, a missing codec as soon as the library is there. A record is never skipped;
  an operator who accepts the loss moves the group's offset (docs/observability.md,
  ModeratorPartitionStuck);
- reports the partition as stuck (`moderator_stuck_partitions{reason}`, and readiness
  fails with the reason in its body) until records from it are read again.

Backpressure (ModerationWorker._apply_backpressure) pauses and resumes every assigned
partition; it leaves the partitions in `held()` paused.

Other poll errors (topic authorisation, an offset out of range without a reset policy, a
fetch that cannot make progress) still raise out of the loop as before: they come from the
fetch response, not from one batch's bytes, so holding one partition would not isolate
them, and kafka-python does not spin after them (the response is consumed as it raises).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from moderator import metrics
from moderator.io.unreadable import UnreadableBatchError
from workers.health import WorkerHealth

logger = logging.getLogger(__name__)

RUNBOOK = "docs/observability.md#moderatorpartitionstuck"

Polled = dict[TopicPartition, list[ConsumerRecord]]


@dataclass
class StuckPartition:
    partition: TopicPartition
    offset: int
    reason: str
    detail: str
    since: float
    attempts: int = 1
    # When the guard resumes the partition for another try; None while that try is on.
    retry_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.partition.topic}-{self.partition.partition}"


class PollGuard:
    def __init__(
        self,
        consumer: KafkaConsumer,
        health: WorkerHealth,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.health = health
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.stuck: dict[TopicPartition, StuckPartition] = {}

    def poll(self, timeout_ms: int, max_records: int, backpressure: bool = False) -> Polled:
        """`consumer.poll`, with unreadable batches held back instead of raised.

        `backpressure`: the worker has paused every partition; a partition due for a retry
        is then resumed by the worker's own resume, not here.
        """
        self._resume_due(backpressure)
        try:
            polled: Polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except UnreadableBatchError as error:
            # kafka-python raises only when the call returned no records, so none are lost.
            self._hold(error)
            return {}
        if self.stuck and polled:
            self._note_progress(polled)
        return polled

    def held(self) -> set[TopicPartition]:
        """Partitions the guard keeps paused now (waiting out their back-off)."""
        return {tp for tp, entry in self.stuck.items() if entry.retry_at is not None}

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Revoked partitions: their next owner meets the batch afresh."""
        gone = [tp for tp in partitions if tp in self.stuck]
        for tp in gone:
            del self.stuck[tp]
        if gone:
            self._publish()

    def _hold(self, error: UnreadableBatchError) -> None:
        tp, now = error.partition, self.clock()
        metrics.POLL_ERRORS.labels(reason=error.reason.value).inc()
        if tp not in self.consumer.assignment():
            logger.warning("unreadable batch on %s, no longer assigned: %s", tp, error)
            return
        entry = self.stuck.get(tp)
        if entry is None or entry.offset != error.offset:
            entry = StuckPartition(tp, error.offset, error.reason.value, error.detail, now)
            self.stuck[tp] = entry
        else:
            entry.attempts += 1
            entry.reason, entry.detail = error.reason.value, error.detail
        backoff = min(self.first_backoff_s * 2 ** (entry.attempts - 1), self.max_backoff_s)
        entry.retry_at = now + backoff
        self.consumer.pause(tp)
        self.consumer.seek(tp, error.offset)
        log = logger.error if entry.attempts == 1 else logger.warning
        log(
            "cannot read %s at offset %s (%s: %s): partition paused, try %d, next in %.0f s; "
            "nothing from this offset on is decided or committed until it can be read (%s)",
            entry.name,
            entry.offset,
            entry.reason,
            entry.detail,
            entry.attempts,
            backoff,
            RUNBOOK,
        )
        self._publish()

    def _resume_due(self, backpressure: bool) -> None:
        now = self.clock()
        for entry in self.stuck.values():
            if entry.retry_at is not None and now >= entry.retry_at:
                entry.retry_at = None
                if not backpressure and entry.partition in self.consumer.assignment():
                    self.consumer.resume(entry.partition)

    def _note_progress(self, polled: Polled) -> None:
        recovered = [tp for tp in polled if tp in self.stuck]
        for tp in recovered:
            entry = self.stuck.pop(tp)
            logger.info(
                "%s readable again at offset %s after %d failed tries over %.1f s",
                entry.name,
                entry.offset,
                entry.attempts,
                self.clock() - entry.since,
            )
        if recovered:
            self._publish()

    def _publish(self) -> None:
        counts = dict.fromkeys(metrics.UNREADABLE_REASONS, 0)
        for entry in self.stuck.values():
            counts[entry.reason] = counts.get(entry.reason, 0) + 1
        for reason, count in counts.items():
            metrics.STUCK_PARTITIONS.labels(reason=reason).set(count)
        self.health.set_stuck_partitions(
            {
                entry.name: f"stuck at offset {entry.offset} ({entry.attempts} failed tries): "
                f"{entry.reason}: {entry.detail}"
                for entry in self.stuck.values()
            }
        )
