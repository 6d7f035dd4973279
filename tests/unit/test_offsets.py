"""Commit points: highest contiguous finished offset per partition, never past a pending one."""

from __future__ import annotations

from kafka import TopicPartition

from workers.offsets import OffsetTracker

TP = TopicPartition("posts", 0)
OTHER = TopicPartition("posts", 1)


def test_commit_point_stops_at_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.started(TP, offset)
    for offset in (10, 11, 13, 14):
        tracker.finished(TP, offset)
    assert tracker.commit_points() == {TP: 12}
    assert tracker.commit_points() == {}  # still held by 12, which is pending
    tracker.finished(TP, 12)
    assert tracker.commit_points() == {TP: 15}
    assert tracker.commit_points() == {}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 0)
    tracker.started(OTHER, 100)
    tracker.finished(OTHER, 100)
    assert tracker.commit_points() == {OTHER: 101}


def test_gaps_in_offsets_are_skipped() -> None:
    # Compacted topics and transaction markers leave offsets that are never delivered.
    tracker = OffsetTracker()
    for offset in (5, 8):
        tracker.started(TP, offset)
        tracker.finished(TP, offset)
    assert tracker.commit_points() == {TP: 9}


def test_forget_drops_revoked_partitions() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 0)
    tracker.started(OTHER, 7)
    tracker.forget({TP})
    assert tracker.commit_points() == {}
    # Assigned again later, from offset 50: the forgotten pending offset 0 holds nothing.
    tracker.started(TP, 50)
    tracker.finished(TP, 50)
    assert tracker.commit_points() == {TP: 51}
    tracker.finished(OTHER, 7)  # the partition kept is untouched
    assert tracker.commit_points() == {OTHER: 8}
