"""Unreadable record batches: located by moderator.io, held back by workers.poll_guard.

No broker here. The first tests read real record batches (built with kafka-python's own
batch builder) through kafka-python's own records class, guarded as a consumer's fetcher
gets it (a stand-in holds the fetcher class: a real consumer would try to connect); the
PollGuard tests drive a fake consumer (FakeConsumer below), so back-off, pause and
readiness can be stepped through on a fake clock. tests/integration/test_kafka_codecs.py
runs the same path on the real broker.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import kafka.codec
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import KafkaError
from kafka.record.default_records import DefaultRecordBase
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from moderator.io.unreadable import (
    UnreadableBatchError,
    UnreadableReason,
    guard_unreadable_batches,
)
from workers.health import WorkerHealth
from workers.poll_guard import PollGuard

TP = TopicPartition("posts", 3)
OTHER = TopicPartition("posts", 1)


def _batch(codec: int, count: int = 5, offset: int = 0) -> bytearray:
    builder = MemoryRecordsBuilder(
        magic=2, compression_type=codec, batch_size=1 << 20, offset=offset
    )
    for i in range(count):
        builder.append(timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=_value(i))
    builder.close()
    return bytearray(builder.buffer())


def _value(i: int) -> bytes:
    # Compressible: kafka-python sends a batch uncompressed when its codec does not shrink it.
    return b"post %d, " % i * 40


class _FetcherStandIn:
    PartitionRecords = Fetcher.PartitionRecords


@pytest.fixture()
def consumer() -> Any:
    """Shaped like a KafkaConsumer as far as guard_unreadable_batches looks."""
    return SimpleNamespace(_fetcher=_FetcherStandIn())


def _records(consumer: Any, data: bytearray, fetch_offset: int, check_crcs: bool) -> Any:
    fetcher: Any = consumer._fetcher
    return fetcher.PartitionRecords(fetch_offset, TP, MemoryRecords(data), check_crcs=check_crcs)


def test_guard_installs_on_this_kafka_python(consumer: Any) -> None:
    # What the guard relies on: the consumer keeps a Fetcher, which builds each fetched
    # batch's records object through self.PartitionRecords and reads it with take().
    assert "self._fetcher = Fetcher(" in inspect.getsource(KafkaConsumer.__init__)
    assert "self.PartitionRecords(" in inspect.getsource(Fetcher._parse_fetched_data)
    assert guard_unreadable_batches(consumer)
    assert guard_unreadable_batches(consumer)  # idempotent: same class again
    assert not guard_unreadable_batches(SimpleNamespace())  # another shape: warns, no guard


def test_missing_codec_names_partition_and_offset_and_drains(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard_unreadable_batches(consumer)
    data = _batch(DefaultRecordBase.CODEC_NONE, 3) + _batch(DefaultRecordBase.CODEC_ZSTD, 3, 3)
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)  # fault injection
    part = _records(consumer, data, fetch_offset=0, check_crcs=True)
    assert [r.offset for r in part.take(10)] == [0, 1, 2]  # the error waits for the next take
    with pytest.raises(UnreadableBatchError) as caught:
        part.take(10)
    error = caught.value
    assert (error.partition, error.offset, error.reason) == (TP, 3, "unsupported_codec")
    assert "zstd" in error.detail and "posts-3@3" in str(error)
    # Drained: kafka-python's fetcher would otherwise take 0 records from it forever.
    assert not part


def test_corrupt_and_undecodable_batches(consumer: Any) -> None:
    guard_unreadable_batches(consumer)
    corrupt = _batch(DefaultRecordBase.CODEC_GZIP, offset=7)
    corrupt[-3] ^= 0xFF  # a flipped bit in the payload: the batch CRC no longer matches
    with pytest.raises(UnreadableBatchError) as caught:
        _records(consumer, corrupt, fetch_offset=7, check_crcs=True).take(10)
    assert (caught.value.offset, caught.value.reason) == (7, UnreadableReason.CORRUPT_BATCH)
    # The same bytes with CRC checks off reach gzip, which cannot decompress them.
    with pytest.raises(UnreadableBatchError) as caught:
        _records(consumer, corrupt, fetch_offset=7, check_crcs=False).take(10)
    assert caught.value.reason is UnreadableReason.UNDECODABLE_BATCH


@pytest.mark.parametrize("codec", ["GZIP", "SNAPPY", "LZ4", "ZSTD"])
def test_every_codec_library_is_installed_and_reads(consumer: Any, codec: str) -> None:
    guard_unreadable_batches(consumer)
    data = _batch(getattr(DefaultRecordBase, f"CODEC_{codec}"), 4)
    values = [r.value for r in _records(consumer, data, 0, check_crcs=True).take(10)]
    assert values == [_value(i) for i in range(4)]


class FakeConsumer:
    """A fake of the few KafkaConsumer calls PollGuard makes; `script` is what poll does next."""

    def __init__(self, *assigned: TopicPartition) -> None:
        self.assigned = set(assigned)
        self.paused_set: set[TopicPartition] = set()
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.script: list[Any] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_set.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_set.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, Exception):
            raise step
        return step


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _unreadable(offset: int = 42) -> UnreadableBatchError:
    from kafka.errors import UnsupportedCodecError

    return UnreadableBatchError(
        TP, offset, UnsupportedCodecError("Libraries for zstd compression codec not found")
    )


def _guard(*assigned: TopicPartition) -> tuple[PollGuard, FakeConsumer, WorkerHealth, Clock]:
    consumer, health, clock = FakeConsumer(*assigned), WorkerHealth(stall_after_s=60), Clock()
    health.set_ready(True)
    guard = PollGuard(consumer, health, 1.0, 4.0, clock)
    return guard, consumer, health, clock


def _sample(name: str, reason: str = "unsupported_codec") -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, {"reason": reason})
    assert value is not None
    return value


def test_an_unreadable_batch_holds_its_partition_only() -> None:
    guard, consumer, health, _ = _guard(TP, OTHER)
    errors_before = _sample("moderator_poll_errors_total")
    consumer.script = [_unreadable(), {OTHER: ["record"]}]

    assert guard.poll(100, 10) == {}
    assert consumer.paused() == {TP} and consumer.seeks == [(TP, 42)]
    assert guard.held() == {TP}
    assert _sample("moderator_poll_errors_total") == errors_before + 1
    assert _sample("moderator_stuck_partitions") == 1
    assert not health.ready() and health.alive()  # readiness fails, liveness does not
    (reason,) = health.not_ready_reasons()
    assert reason.startswith("partition posts-3 stuck at offset 42") and "zstd" in reason

    assert guard.poll(100, 10) == {OTHER: ["record"]}  # the others keep flowing
    assert not health.ready()


def test_retries_back_off_then_recover_with_nothing_skipped() -> None:
    guard, consumer, health, clock = _guard(TP)
    consumer.script = [_unreadable()]
    guard.poll(100, 10)
    clock.now += 0.9
    guard.poll(100, 10)
    assert consumer.paused() == {TP}  # 1 s back-off not over

    clock.now += 0.2
    consumer.script = [_unreadable()]
    guard.poll(100, 10)  # resumed for a try, which fails again: back-off doubles
    assert consumer.paused() == {TP} and consumer.seeks == [(TP, 42), (TP, 42)]
    assert guard.stuck[TP].attempts == 2 and guard.stuck[TP].retry_at == clock.now + 2.0
    for _ in range(3):  # capped at 4 s
        clock.now += 10
        consumer.script = [_unreadable()]
        guard.poll(100, 10)
    assert guard.stuck[TP].retry_at == clock.now + 4.0

    clock.now += 4
    consumer.script = [{TP: ["record at 42"]}]
    assert guard.poll(100, 10) == {TP: ["record at 42"]}
    assert not consumer.paused() and not guard.stuck
    assert health.ready() and _sample("moderator_stuck_partitions") == 0


def test_backpressure_leaves_the_resume_to_the_worker() -> None:
    guard, consumer, _, clock = _guard(TP, OTHER)
    consumer.script = [_unreadable()]
    guard.poll(100, 10)
    consumer.pause(TP, OTHER)  # the worker's backpressure pause
    clock.now += 2
    guard.poll(100, 10, backpressure=True)
    assert consumer.paused() == {TP, OTHER}
    assert guard.held() == set()  # the worker's resume now includes TP
    assert TP in guard.stuck  # still stuck until records from it are read


def test_revoked_partitions_are_forgotten() -> None:
    guard, consumer, health, _ = _guard(TP)
    consumer.script = [_unreadable()]
    guard.poll(100, 10)
    guard.forget([TP])
    assert not guard.stuck and health.ready()


def test_a_partition_no_longer_assigned_is_not_paused() -> None:
    guard, consumer, health, _ = _guard(OTHER)
    consumer.script = [_unreadable()]
    assert guard.poll(100, 10) == {}
    assert not consumer.paused() and not guard.stuck and health.ready()


def test_other_poll_errors_still_raise() -> None:
    guard, consumer, _, _ = _guard(TP)
    consumer.script = [KafkaError("authorisation failed")]
    with pytest.raises(KafkaError):
        guard.poll(100, 10)
