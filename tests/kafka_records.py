"""A ConsumerRecord as kafka-python hands one to the worker, for tests that build decisions
without a broker."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord


def consumer_record(
    offset: int, partition: int = 0, timestamp_ms: int = 1_700_000_000_000
) -> ConsumerRecord:
    return ConsumerRecord(
        topic="posts",
        partition=partition,
        leader_epoch=0,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        headers=[],
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        serialized_header_size=0,
    )
