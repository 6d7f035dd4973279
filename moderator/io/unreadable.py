"""Record batches a consumer cannot read: which partition, which offset, and why.

kafka-python 3.0.12 reads a fetched batch lazily, inside `KafkaConsumer.poll`
(`Fetcher.fetched_records` → `_append` → `PartitionRecords.take`), and a batch it
cannot read raises out of poll:

- `UnsupportedCodecError` when the library for the batch's codec (python-snappy, lz4,
  zstandard) is not importable, on the batch's first record;
- `CorruptRecordError` when a batch or record fails its CRC (`check_crcs`, on by
  default) or its framing does not add up;
- the codec library's own error (`zlib.error`, `gzip.BadGzipFile`, lz4's `RuntimeError`,
  `zstandard.ZstdError`, ...) when a batch passes its CRC but does not decompress.

Two things make these errors hard to handle from outside the consumer:

1. They do not say where they happened. `UnsupportedCodecError` carries only the codec
   name; `CorruptRecordError` names the partition and offset only inside its message;
   a codec library's error knows nothing of Kafka. The fetcher does not keep the failed
   partition anywhere public either (`ExceptionMetadata` is dropped as it is raised).
2. The consumer cannot get past them by itself. The failed batch's records object stays
   the fetcher's "next in line": its generator has ended with the error but the object
   was not drained, so the *next* poll takes 0 records from it again and again and never
   returns (measured: poll still spinning after 60 s). Seeking to the same offset does
   not clear it (`_append` still sees a matching position), and pausing only parks it,
   to spin again on resume.

`guard_unreadable_batches` fixes both where the facts are known: it gives the
consumer's fetcher a `PartitionRecords` subclass whose `take` turns any error into
`UnreadableBatchError` naming the topic, partition and first unread offset, after
draining the broken records object so the fetcher moves on to other partitions. The
consumer's position stays at that offset (no record from it on was returned), so the
next fetch of the partition reads the same batch again: nothing is skipped.

Errors about the fetch response itself (`RecordTooLargeError`, authorisation, offset out
of range) are raised before any batch is read and are not wrapped.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

from moderator.errors import ModeratorError, UnreadableReason

logger = logging.getLogger(__name__)

_DETAIL_CHARS = 300


def classify(error: BaseException) -> UnreadableReason:
    if isinstance(error, UnsupportedCodecError):
        return UnreadableReason.UNSUPPORTED_CODEC
    if isinstance(error, CorruptRecordError):
        return UnreadableReason.CORRUPT_BATCH
    return UnreadableReason.UNDECODABLE_BATCH


class UnreadableBatchError(ModeratorError):
    """A fetched record batch could not be read; the consumer's position is still `offset`."""

    def __init__(self, partition: TopicPartition, offset: int, cause: BaseException) -> None:
        self.partition = partition
        self.offset = offset
        self.reason = classify(cause)
        # Library messages name codecs, CRCs and offsets, never record contents; capped anyway.
        text, name = str(cause), type(cause).__name__
        self.detail = (text if text.startswith(name) else f"{name}: {text}")[:_DETAIL_CHARS]
        super().__init__(
            f"{partition.topic}-{partition.partition}@{offset}: {self.reason.value}: {self.detail}"
        )


def guard_unreadable_batches(consumer: KafkaConsumer) -> bool:
    """Make `consumer.poll` raise UnreadableBatchError for a batch it cannot read.

    Returns False (and logs a warning) when this kafka-python's fetcher is not shaped as
    3.0.x's is; tests/unit/test_poll_guard.py fails then, so an upgrade is noticed.
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    base = getattr(type(fetcher), "PartitionRecords", None)
    if fetcher is None or base is None or not callable(getattr(base, "take", None)):
        logger.warning(
            "this kafka-python has no Fetcher.PartitionRecords.take: a record batch the "
            "consumer cannot read will raise out of poll without its partition and offset"
        )
        return False
    # `_parse_fetched_data` builds each batch's records object as self.PartitionRecords(...),
    # so an instance attribute on this consumer's fetcher is enough: nothing global changes.
    fetcher.PartitionRecords = _guarded(base)
    return True


_GUARDED: dict[type, type] = {}


def _guarded(base: type) -> type:
    if base in _GUARDED:
        return _GUARDED[base]

    class GuardedPartitionRecords(base):  # type: ignore[misc]  # kafka-python: untyped
        def take(self, n: int | None = None) -> list[Any]:
            # The consumer's position: where the previous take ended (or the fetch began).
            offset = max(self.fetch_offset, self.next_fetch_offset)
            try:
                records: list[Any] = super().take(n)
                return records
            except Exception as exc:
                partition = self.topic_partition
                # The generator has ended; drained, the fetcher moves on instead of spinning.
                self.drain()
                raise UnreadableBatchError(partition, offset, exc) from exc

    _GUARDED[base] = GuardedPartitionRecords
    return GuardedPartitionRecords
