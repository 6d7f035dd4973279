"""Dead-letter record contract, version 1.

The record's value is the original bytes, untouched, so it can be replayed after
a fix; everything moderator adds travels in headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from moderator.errors import ReasonCode

DEADLETTER_SCHEMA_VERSION = 1
MAX_DETAIL_CHARS = 500

HEADER_REASON = "moderator.reason"
HEADER_DETAIL = "moderator.detail"
HEADER_TOPIC = "moderator.source.topic"
HEADER_PARTITION = "moderator.source.partition"
HEADER_OFFSET = "moderator.source.offset"
HEADER_VERSION = "moderator.schema_version"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: ReasonCode
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_REASON, self.reason.value.encode()),
            (HEADER_DETAIL, self.detail[:MAX_DETAIL_CHARS].encode("utf-8", "replace")),
            (HEADER_TOPIC, self.source_topic.encode()),
            (HEADER_PARTITION, str(self.source_partition).encode()),
            (HEADER_OFFSET, str(self.source_offset).encode()),
            (HEADER_VERSION, str(DEADLETTER_SCHEMA_VERSION).encode()),
        ]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]]) -> DeadLetter:
        values = {key: value.decode("utf-8", "replace") for key, value in headers}
        return cls(
            reason=ReasonCode(values[HEADER_REASON]),
            detail=values.get(HEADER_DETAIL, ""),
            source_topic=values[HEADER_TOPIC],
            source_partition=int(values[HEADER_PARTITION]),
            source_offset=int(values[HEADER_OFFSET]),
        )
