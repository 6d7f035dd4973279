"""ForwardMerger on its own: slices, arrival order, errors confined to their pass. The
forward function is a plain Python stand-in on a real one-thread executor."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from moderator.serving.forward_merger import ForwardMerger


def test_calls_waiting_for_the_thread_share_one_pass_and_get_their_own_slices() -> None:
    passes: list[list[int]] = []
    release = threading.Event()

    def forward(items: list[int]) -> list[int]:
        passes.append(items)
        if len(passes) == 1:
            release.wait(5)  # hold the first pass until the others are waiting
        return [item * 10 for item in items]

    async def main() -> list[list[int]]:
        merger: ForwardMerger[int, int] = ForwardMerger(ThreadPoolExecutor(1), forward)
        first = asyncio.create_task(merger.run([1]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(merger.run(items)) for items in ([2, 3], [4], [5, 6, 7])]
        await asyncio.sleep(0.05)
        release.set()
        return [await first, *[await call for call in rest]]

    results = asyncio.run(main())
    assert passes == [[1], [2, 3, 4, 5, 6, 7]]
    assert results == [[10], [20, 30], [40], [50, 60, 70]]


def test_a_failed_pass_fails_its_callers_only() -> None:
    def forward(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad batch")
        return items

    async def main() -> None:
        merger: ForwardMerger[int, int] = ForwardMerger(ThreadPoolExecutor(1), forward)
        with pytest.raises(ValueError, match="bad batch"):
            await merger.run([-1])
        assert await merger.run([7, 8]) == [7, 8]

    asyncio.run(main())
