"""Which offsets are safe to commit: the highest contiguous finished offset per partition.

A record is finished when its decision or dead-letter record has been acknowledged
by the broker. Committing past an unfinished record could lose it after a crash.
"""

from __future__ import annotations

from collections import defaultdict

from kafka import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = defaultdict(set)
        self._finished: dict[TopicPartition, set[int]] = defaultdict(set)
        self._next: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp].add(offset)
        self._next.setdefault(tp, offset)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp].discard(offset)
        self._finished[tp].add(offset)

    def commit_points(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to consume after the contiguous finished run.

        Only partitions whose commit point moved are returned; the tracker then
        forgets the offsets below it.
        """
        points: dict[TopicPartition, int] = {}
        for tp, finished in self._finished.items():
            start = self._next[tp]
            cursor = start
            # Offsets can have gaps (compaction, transactions): skip any that were never started.
            pending = self._pending[tp]
            highest = max(finished, default=start - 1)
            while cursor <= highest and cursor not in pending:
                finished.discard(cursor)
                cursor += 1
            if cursor != start:
                self._next[tp] = cursor
                points[tp] = cursor
        return points

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop state for partitions this worker no longer owns."""
        for tp in partitions:
            self._pending.pop(tp, None)
            self._finished.pop(tp, None)
            self._next.pop(tp, None)
