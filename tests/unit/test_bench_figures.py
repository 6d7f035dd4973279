"""The bench's arithmetic: the ingest window of a worker group and the bracketed baselines."""

from __future__ import annotations

import pytest

from moderator.benchmark.ingest import group_rate
from moderator.benchmark.raw_loop import RawLoopResult, mean_result


def test_group_rate_counts_only_the_span_every_worker_was_deciding() -> None:
    # Worker a starts at t=1 and runs dry at t=5; worker b starts late (t=2) and runs on to t=6.
    a = [(0.0, 0), (1.0, 100), (2.0, 200), (3.0, 300), (4.0, 400), (5.0, 500), (6.0, 500)]
    b = [(0.0, 0), (1.0, 0), (2.0, 50), (3.0, 150), (4.0, 250), (5.0, 350), (6.0, 450)]
    rate, window = group_rate([a, b])
    # Window t=2..5: a decided 300, b decided 300.
    assert window == pytest.approx(3.0)
    assert rate == pytest.approx(200.0)


def test_group_rate_of_one_worker_leaves_out_start_up_and_the_idle_tail() -> None:
    series = [(0.0, 0), (0.5, 0), (1.0, 64), (2.0, 1064), (3.0, 2064), (4.0, 2064)]
    rate, window = group_rate([series])
    assert (rate, window) == pytest.approx((1000.0, 2.0))


def test_group_rate_refuses_a_worker_that_decided_nothing() -> None:
    busy = [(0.0, 0), (1.0, 10), (2.0, 20)]
    idle = [(0.0, 0), (1.0, 0), (2.0, 0)]
    with pytest.raises(RuntimeError, match="decided nothing"):
        group_rate([busy, idle])


def test_group_rate_refuses_workers_that_never_overlapped() -> None:
    first = [(0.0, 0), (1.0, 10), (2.0, 20), (3.0, 20), (4.0, 20)]
    second = [(0.0, 0), (1.0, 0), (2.0, 0), (3.0, 5), (4.0, 15)]
    with pytest.raises(RuntimeError, match="never decided at the same time"):
        group_rate([first, second])


def test_bracketed_raw_loop_is_the_mean_of_both_runs() -> None:
    first = RawLoopResult(30.0, 20.0, 2.0, 4.0)
    last = RawLoopResult(26.0, 24.0, 3.0, 6.0)
    assert mean_result(first, last) == RawLoopResult(28.0, 22.0, 2.5, 5.0)
