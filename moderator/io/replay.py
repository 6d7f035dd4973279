"""Dead-letter replay: re-publish dead-lettered records, original bytes and key, after a fix.

The dead-letter topic is read from its beginning to the end each partition had when the
replay first fetched from it, by a consumer of its own (no consumer group, nothing committed:
a replay never moves anyone's offsets, and records dead-lettered again during the replay wait
for the next one).
A record is selected by the reason in its `moderator.reason` header and, optionally, by its
Kafka timestamp. It goes back to the topic it was read from (the `moderator.source.topic`
header; the settings' posts topic when absent) with a `moderator.replayed_from` header,
"dlq-topic/partition/offset", so a record that loops is visible.

Once only: before publishing, a Redis key per dead-letter (topic, partition, offset) is set
with SET NX ("pending", short expiry); once the broker acknowledges the record it is set to
"done" (long expiry); a failed publish deletes it. A replay that crashes between the broker's
acknowledgement and "done" can publish that record again after the pending expiry: the worker
decides a duplicate post identically (at-least-once, DESIGN.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from moderator.config import Settings
from moderator.errors import ModeratorError
from moderator.schema.deadletter import HEADER_REASON, HEADER_TOPIC

logger = logging.getLogger(__name__)
HEADER_REPLAYED_FROM = "moderator.replayed_from"
GUARD_PREFIX = "moderator:dlq-replayed"
NO_REASON = "(no reason header)"
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ReplayError(ModeratorError):
    """The replay cannot start or was cut short; nothing already acknowledged is undone."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time with its offset (2026-11-30T08:00:00Z) or a duration back from now
    (90s, 30m, 2h, 7d, 1w)."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReplayError(
            f"--since {text!r}: give an RFC 3339 time (2026-11-30T08:00:00Z) or a duration "
            "back from now (30m, 2h, 7d)"
        ) from exc
    if moment.tzinfo is None:
        raise ReplayError(f"--since {text!r}: give the UTC offset too (Z or +01:00)")
    return moment


class ReplayGuard(Protocol):
    """Marks a dead-letter record as replayed, once (Redis in production)."""

    def claim(self, key: str) -> bool:
        """True when nobody replayed or is replaying the record: it is now ours."""
        ...

    def confirm(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...

    def replayed(self, key: str) -> bool: ...


class RedisReplayGuard:
    def __init__(self, client: Any, pending_ttl_s: int = 600, done_ttl_s: int = 30 * 86_400):
        self.client = client
        self.pending_ttl_s = pending_ttl_s
        self.done_ttl_s = done_ttl_s

    def claim(self, key: str) -> bool:
        return bool(self.client.set(key, b"pending", nx=True, ex=self.pending_ttl_s))

    def confirm(self, key: str) -> None:
        self.client.set(key, b"done", ex=self.done_ttl_s)

    def release(self, key: str) -> None:
        self.client.delete(key)

    def replayed(self, key: str) -> bool:
        return bool(self.client.exists(key))


def guard_key(topic: str, partition: int, offset: int) -> str:
    return f"{GUARD_PREFIX}:{topic}:{partition}:{offset}"


@dataclass(frozen=True)
class ReplayOptions:
    reasons: frozenset[str]
    """Reasons to replay; empty selects every reason (allowed in a dry run only)."""
    since: datetime | None = None
    limit: int | None = None
    """Publish at most this many records (a dry run: count at most this many)."""
    dry_run: bool = False
    to_topic: str | None = None
    """Publish here instead of each record's source topic."""
    dlq_topic: str | None = None
    """The dead-letter topic to read; None: the settings' (kafka.dlq_topic)."""
    idle_timeout_s: float = 30.0
    """Give up when the topic yields nothing this long before its end offsets are reached."""


@dataclass
class ReplaySummary:
    dlq_topic: str
    scanned: int = 0
    """Records read from the dead-letter topic (up to its end offsets at the start)."""
    by_reason: Counter[str] = field(default_factory=Counter)
    """Every record read, by reason (before the --reason, --since and --limit filters)."""
    selected: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    """Published and acknowledged (a dry run: would be)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Already replayed by an earlier run (or one in progress)."""
    failed: Counter[str] = field(default_factory=Counter)
    too_old: int = 0
    targets: Counter[str] = field(default_factory=Counter)
    limit_reached: bool = False


@dataclass
class _Pending:
    future: Any
    key: str
    reason: str
    target: str


def _headers(record: Any) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}


def read_dead_letters(consumer: KafkaConsumer, topic: str, idle_timeout_s: float) -> Iterator[Any]:
    """Every record of `topic` from its beginning up to each partition's end as of the
    replay's first fetch from it.

    The end is the high watermark of that first fetch response, not `end_offsets()`: the local
    Tansu broker's ListOffsets answer lags the real end (docs/observability.md)."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ReplayError(f"the topic {topic!r} does not exist")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    ends: dict[TopicPartition, int] = {}
    remaining = set(assigned)
    last_progress = time.monotonic()
    while remaining:
        batches = consumer.poll(timeout_ms=500)
        for tp, records in batches.items():
            end = ends.setdefault(tp, consumer.highwater(tp) or 0)
            for record in records:
                if record.offset < end:
                    yield record
        for tp in list(remaining):
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # not fetched yet
            if consumer.position(tp) >= ends.setdefault(tp, highwater):
                remaining.discard(tp)
                consumer.pause(tp)
        if batches:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > idle_timeout_s:
            where = ", ".join(f"{tp.partition}@{consumer.position(tp)}" for tp in remaining)
            raise ReplayError(
                f"{topic}: no records for {idle_timeout_s:g}s before the end ({where})"
            )


def replay(
    settings: Settings,
    options: ReplayOptions,
    consumer: KafkaConsumer,
    producer: KafkaProducer | None,
    guard: ReplayGuard | None,
) -> ReplaySummary:
    """Read the dead-letter topic and replay the selected records (see the module docstring).

    A dry run publishes nothing; with a guard it also counts what earlier runs replayed."""
    if not options.dry_run and (producer is None or not options.reasons):
        raise ReplayError("a replay needs a producer and at least one --reason")
    dlq = options.dlq_topic or settings.kafka.dlq_topic
    summary = ReplaySummary(dlq)
    since_ms = int(options.since.timestamp() * 1000) if options.since else None
    pending: list[_Pending] = []
    for record in read_dead_letters(consumer, dlq, options.idle_timeout_s):
        summary.scanned += 1
        headers = _headers(record)
        reason = headers.get(HEADER_REASON, NO_REASON)
        summary.by_reason[reason] += 1
        if reason == NO_REASON or (options.reasons and reason not in options.reasons):
            continue
        if since_ms is not None and record.timestamp < since_ms:
            summary.too_old += 1
            continue
        if options.limit is not None and sum(summary.replayed.values()) + len(pending) >= (
            options.limit
        ):
            summary.limit_reached = True
            continue
        summary.selected[reason] += 1
        key = guard_key(record.topic, record.partition, record.offset)
        target = options.to_topic or headers.get(HEADER_TOPIC) or settings.kafka.posts_topic
        if options.dry_run:
            if guard is not None and guard.replayed(key):
                summary.skipped[reason] += 1
            else:
                summary.replayed[reason] += 1
                summary.targets[target] += 1
            continue
        if guard is not None and not guard.claim(key):
            summary.skipped[reason] += 1
            continue
        origin = f"{record.topic}/{record.partition}/{record.offset}".encode()
        assert producer is not None  # checked above: only a dry run goes without
        try:
            future = producer.send(
                target,
                key=record.key,
                value=record.value,
                headers=[(HEADER_REPLAYED_FROM, origin)],
            )
        except KafkaError as exc:  # refused before sending (too large, bad topic): retryable
            logger.warning("replay of %s failed: %s", origin.decode(), exc)
            if guard is not None:
                guard.release(key)
            summary.failed[reason] += 1
            continue
        pending.append(_Pending(future, key, reason, target))
        if len(pending) >= 500:
            _settle(producer, pending, guard, summary)
    if producer is not None and pending:
        _settle(producer, pending, guard, summary)
    return summary


def _settle(
    producer: KafkaProducer,
    pending: list[_Pending],
    guard: ReplayGuard | None,
    summary: ReplaySummary,
    timeout_s: float = 30.0,
) -> None:
    """Wait for the broker's acknowledgements; mark each record done, or free it to retry."""
    producer.flush(timeout=timeout_s)
    for item in pending:
        try:
            item.future.get(timeout=timeout_s)
        except KafkaError as exc:  # a failed send: counted, and its guard freed for a rerun
            logger.warning("replay of %s failed: %s", item.key, exc)
            if guard is not None:
                guard.release(item.key)
            summary.failed[item.reason] += 1
            continue
        if guard is not None:
            guard.confirm(item.key)
        summary.replayed[item.reason] += 1
        summary.targets[item.target] += 1
    pending.clear()
